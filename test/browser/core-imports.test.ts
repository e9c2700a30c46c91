import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { isBuiltin } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * The model's core must run in a browser: nothing it imports, however indirectly, may be a Node
 * builtin, and it may use no Node-only global (process, Buffer, setImmediate, require, ...).
 */
const root = resolve(import.meta.dirname, "../..");

/** The core: what `src/browser.ts` bundles. Everything else under src/ (the CLI) may use Node. */
const CORE_ROOTS = [
  "src/base",
  "src/sched",
  "src/mm",
  "src/drivers",
  "src/explore",
  "src/system.ts",
  "src/process.ts",
  "src/device.ts",
  "src/conformance",
  "src/index.ts",
  "src/explore_api.ts",
  "src/driver.ts",
  "src/browser.ts",
];

function tsFilesUnder(path: string): string[] {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return path.endsWith(".ts") ? [path] : [];
  return readdirSync(path)
    .sort()
    .flatMap((name) => tsFilesUnder(join(path, name)));
}

/** Every specifier a source text imports: static, type-only, re-exports, `import()` and `require()`. */
function specifiersOf(text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.map((file) => file.fileName);
}

interface ImportGraph {
  /** Files reached (relative to the repository root). */
  files: string[];
  /** `file -> specifier` for every specifier that is not a relative path. */
  external: string[];
  /** `file -> specifier` for relative imports that name no file. */
  unresolved: string[];
}

/** Walks the import graph from `entries`, following relative imports (`./x.js` is `./x.ts`). */
function walkImports(entries: string[], read: (file: string) => string): ImportGraph {
  const seen = new Set<string>();
  const external: string[] = [];
  const unresolved: string[] = [];
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of specifiersOf(read(file))) {
      const from = relative(root, file);
      if (!spec.startsWith(".") && !spec.startsWith("/")) {
        external.push(`${from} -> ${spec}`);
        continue;
      }
      const target = resolve(dirname(file), spec.replace(/\.js$/, ".ts"));
      if (existsSync(target)) queue.push(target);
      else unresolved.push(`${from} -> ${spec}`);
    }
  }
  return { files: [...seen].map((file) => relative(root, file)).sort(), external, unresolved };
}

/** The Node builtins among a graph's external specifiers (`node:fs`, `fs`, `fs/promises`, ...). */
function builtinsIn(external: string[]): string[] {
  return external.filter((edge) => isBuiltin(edge.slice(edge.indexOf(" -> ") + 4)));
}

describe("the core imports nothing from Node", () => {
  const entries = CORE_ROOTS.flatMap((path) => tsFilesUnder(join(root, path)));
  const read = (file: string): string => readFileSync(file, "utf8");

  it("the walker sees every kind of import, and knows a builtin when it meets one", () => {
    const text = [
      'import { readFileSync } from "node:fs";',
      'import type { Worker } from "worker_threads";',
      'export { join } from "path";',
      'import "./side-effect.js";',
      'const os = await import("os");',
      'const cp = require("child_process");',
      'import { System } from "hmmsim";',
    ].join("\n");
    expect(specifiersOf(text).sort()).toEqual(
      ["./side-effect.js", "child_process", "hmmsim", "node:fs", "os", "path", "worker_threads"].sort(),
    );
    const edges = specifiersOf(text).map((spec) => `x.ts -> ${spec}`);
    expect(builtinsIn(edges).sort()).toEqual(
      [
        "x.ts -> child_process",
        "x.ts -> node:fs",
        "x.ts -> os",
        "x.ts -> path",
        "x.ts -> worker_threads",
      ].sort(),
    );
  });

  it("no file the core reaches imports a Node builtin, or any package at all", () => {
    const graph = walkImports(entries, read);
    // Not vacuous: the walk reached the whole core, the surface included.
    for (const file of ["src/system.ts", "src/process.ts", "src/device.ts", "src/mm/migrate_vma.ts"]) {
      expect(graph.files).toContain(file);
    }
    expect(graph.files.length).toBeGreaterThanOrEqual(entries.length);
    expect(graph.unresolved).toEqual([]);
    expect(builtinsIn(graph.external)).toEqual([]);
    // A package could pull Node in itself; the core has none, and one added should be looked at.
    expect(graph.external).toEqual([]);
    // Everything reached is core (the CLI, which may use Node, is never imported by it).
    expect(graph.files.filter((file) => file.startsWith("src/cli/"))).toEqual([]);
  });

  it("type-checks with the browser's globals and without Node's", () => {
    // `types: []` drops @types/node, so `process`, `Buffer`, `setImmediate`, `require`, `__dirname`
    // and `node:*` modules are unknown names; DOM supplies what a browser has (TextEncoder,
    // performance, setTimeout).
    const program = ts.createProgram(entries, {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ["lib.es2023.d.ts", "lib.dom.d.ts"],
      types: [],
      strict: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      skipLibCheck: true,
      verbatimModuleSyntax: true,
    });
    const messages = ts
      .getPreEmitDiagnostics(program)
      .map(
        (d) =>
          `${d.file ? relative(root, d.file.fileName) : "?"}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`,
      );
    expect(messages).toEqual([]);
    // The program held the core itself, not just the lib files.
    const sources = program.getSourceFiles().map((file) => relative(root, file.fileName));
    expect(sources).toContain("src/system.ts");
  });
});
