/**
 * The package as a user gets it: `npm pack` (whose prepack builds dist/), the tarball installed into an
 * empty project with only its own dependencies (no tsx, no devDependencies), and then the command
 * line, the README's library example (examples/readme/library.mjs) and the typed examples
 * (examples/readme/*.ts, type-checked against the installed .d.ts files, then compiled and run), and
 * the driver examples (examples/my-driver, examples/gpu-driver), which import `hmmsim/driver` and
 * `hmmsim/explore` by name: type-checked, compiled and run the same way.
 *
 * typescript and @types/node are installed at the versions in this repository's node_modules, from
 * npm's cache where it has them (--prefer-offline). Everything happens in one temporary directory,
 * removed at the end.
 */
import { type ExecFileSyncOptions, execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..", "..");
const examples = join(root, "examples", "readme");
/** The driver examples, each copied into a folder of the same name in the project. */
const DRIVER_EXAMPLES = ["my-driver", "gpu-driver"];
const TIMEOUT_MS = 600_000;
const TSC_FLAGS = ["--strict", "--module", "NodeNext", "--moduleResolution", "NodeNext"];

function versionOf(dir: string): string {
  return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
}

/**
 * The environment for npm and npx: ours without the npm_* variables that `npm test` sets for its own
 * package (npm_package_*, npm_config_local_prefix, npm_lifecycle_*), which must not steer commands run
 * in another project; the cache and registry settings are kept.
 */
function childEnv(): NodeJS.ProcessEnv {
  const keep = new Set(["npm_config_cache", "npm_config_registry", "npm_config_userconfig"]);
  return Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) || keep.has(name.toLowerCase())),
  );
}

function run(command: string, args: readonly string[], cwd: string): string {
  const options: ExecFileSyncOptions = { cwd, env: childEnv(), encoding: "utf8", stdio: "pipe" };
  try {
    return execFileSync(command, args, options) as string;
  } catch (error) {
    const failed = error as { status: number | null; stdout?: string; stderr?: string };
    throw new Error(
      `${command} ${args.join(" ")} (in ${cwd}) exited with ${failed.status}\n` +
        `stdout: ${failed.stdout ?? ""}\nstderr: ${failed.stderr ?? ""}`,
    );
  }
}

/** The lines of a library example from its first import on, less the imports (each is one line). */
function exampleBody(code: string): string[] {
  const lines = code.trim().split("\n");
  const first = lines.findIndex((line) => line.startsWith("import "));
  return lines.slice(first).filter((line) => !line.startsWith("import "));
}

describe("the packed package, installed into an empty project", { timeout: TIMEOUT_MS }, () => {
  let work = "";
  let project = "";
  let packed: string[] = [];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "hmmsim-consumer-"));
    const report = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work], root)) as {
      filename: string;
      files: { path: string }[];
    }[];
    const tarball = join(work, report[0]!.filename);
    packed = report[0]!.files.map((file) => file.path);
    project = join(work, "project");
    mkdirSync(project);
    writeFileSync(
      join(project, "package.json"),
      `${JSON.stringify({ name: "hmmsim-consumer", private: true, type: "module" }, null, 2)}\n`,
    );
    const typescript = versionOf(join(root, "node_modules", "typescript"));
    const typesNode = versionOf(join(root, "node_modules", "@types", "node"));
    run(
      "npm",
      [
        "install",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        tarball,
        `typescript@${typescript}`,
        `@types/node@${typesNode}`,
      ],
      project,
    );
    for (const file of readdirSync(examples)) copyFileSync(join(examples, file), join(project, file));
    for (const example of DRIVER_EXAMPLES) {
      mkdirSync(join(project, example));
      for (const file of readdirSync(join(root, "examples", example)).filter((name) => name.endsWith(".ts")))
        copyFileSync(join(root, "examples", example, file), join(project, example, file));
    }
  }, TIMEOUT_MS);

  afterAll(() => {
    if (work !== "") rmSync(work, { recursive: true, force: true });
  });

  it("packs only what a user needs: the build, the bin, the README", () => {
    expect(packed).toContain("dist/index.js");
    expect(packed).toContain("dist/index.d.ts");
    expect(packed).toContain("dist/cli/main.js");
    expect(packed).toContain("bin/hmmsim.js");
    const strays = packed.filter(
      (path) =>
        !/^(dist\/.*\.(js|d\.ts|js\.map)|bin\/hmmsim\.js|README\.md|package\.json|LICENSE)$/.test(path),
    );
    expect(strays).toEqual([]);
  });

  it("installs without tsx, and nothing built imports it but the worker starter's sources branch", () => {
    expect(existsSync(join(project, "node_modules", "tsx"))).toBe(false);
    const dist = join(project, "node_modules", "hmmsim", "dist");
    const mentions = (readdirSync(dist, { recursive: true }) as string[])
      .filter((path) => path.endsWith(".js") && readFileSync(join(dist, path), "utf8").includes('"tsx'))
      .sort();
    expect(mentions).toEqual(["cli/run_in_worker.js"]);
  });

  it("npx hmmsim demo --json reports the data intact", () => {
    const report = JSON.parse(run("npx", ["hmmsim", "demo", "--json"], project)) as Record<string, unknown>;
    expect(report).toMatchObject({
      protocol: "modern",
      dataIntact: true,
      deviceReadIntact: true,
      invariants: "ok",
      checksHeld: true,
    });
  });

  it("npx hmmsim --version prints the package's version", () => {
    expect(run("npx", ["hmmsim", "--version"], project).trim()).toBe(versionOf(root));
  });

  it("examples/readme/library.mjs is the README's library example and runs with its asserts holding", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const start = readme.indexOf("```ts\n", readme.indexOf("## The library"));
    const readmeExample = readme.slice(start + 6, readme.indexOf("```", start + 6));
    const copy = readFileSync(join(examples, "library.mjs"), "utf8");
    expect(exampleBody(copy)).toEqual(exampleBody(readmeExample));
    expect(readFileSync(join(examples, "library.ts"), "utf8")).toContain(exampleBody(copy).join("\n"));
    // node:assert/strict throws, and the process exits non-zero, if any result differs from the README's.
    expect(run(process.execPath, ["library.mjs"], project)).toBe("");
  });

  it("the typed examples check against the installed types and run", () => {
    const sources = ["library.ts", "explore.ts"];
    run(
      process.execPath,
      [join("node_modules", "typescript", "bin", "tsc"), "--noEmit", ...TSC_FLAGS, ...sources],
      project,
    );
    run(
      process.execPath,
      [join("node_modules", "typescript", "bin", "tsc"), ...TSC_FLAGS, "--outDir", "out", ...sources],
      project,
    );
    expect(run(process.execPath, [join("out", "library.js")], project)).toBe("");
    expect(run(process.execPath, [join("out", "explore.js")], project)).toContain("FOUND deadlock");
  });

  it("hmmsim/driver exports what src/driver.ts does", async () => {
    const installed = join(project, "node_modules", "hmmsim", "dist", "driver.js");
    const built = Object.keys(await import(installed)).sort();
    const source = Object.keys(await import("../../src/driver.js")).sort();
    expect(built).toEqual(source);
    expect(built).toContain("memremapPages");
    expect(built).toContain("System");
  });

  it("the driver examples check against the installed types (strict, NodeNext) and run", () => {
    // A program of the examples plus a runner that explores toygpu's first bug through hmmsim/explore.
    writeFileSync(
      join(project, "gpu-driver", "run.ts"),
      [
        'import { explore } from "hmmsim/explore";',
        'import { ownMigrateScenario } from "./scenario.js";',
        "const result = explore(ownMigrateScenario, { seconds: 30 });",
        'console.log(result.finding === null ? "nothing found" : "FOUND " + result.finding.violation.kind);',
        "",
      ].join("\n"),
    );
    const sources = ["my-driver/driver.ts", "my-driver/main.ts", "gpu-driver/run.ts"];
    const tsc = join("node_modules", "typescript", "bin", "tsc");
    // One tsc run: it exits non-zero on any type error, so run() fails the test with the diagnostics.
    run(
      process.execPath,
      [tsc, ...TSC_FLAGS, "--rootDir", ".", "--outDir", "out-drivers", ...sources],
      project,
    );
    const lines = run(process.execPath, [join("out-drivers", "my-driver", "main.js")], project)
      .trim()
      .split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[3]).toBe("evicted 3 pages; every byte is intact and device memory is empty");
    expect(run(process.execPath, [join("out-drivers", "gpu-driver", "run.js")], project).trim()).toBe(
      "FOUND invariant",
    );
  });
});
