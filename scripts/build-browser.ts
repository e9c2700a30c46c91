/**
 * `npm run build:browser`: bundles src/browser.ts into dist/browser/hmmsim.js, one ES module for a
 * browser (ES2022, with a source map). The bundle must not need Node: esbuild's browser platform
 * already refuses a `node:` import it cannot resolve, and the plugin below refuses every Node builtin
 * by name (`fs`, `node:fs`, `fs/promises`, ...) wherever it is imported, so none can slip in through
 * a package's browser field or an alias either. test/browser/browser.test.ts builds the same way.
 */
import { statSync } from "node:fs";
import { isBuiltin } from "node:module";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type BuildOptions, type BuildResult, build, type Plugin } from "esbuild";

export const repoRoot = resolve(import.meta.dirname, "..");
export const BROWSER_ENTRY = join(repoRoot, "src/browser.ts");
export const BROWSER_OUTFILE = join(repoRoot, "dist/browser/hmmsim.js");

/** Fails the build at the first import of a Node builtin, naming the file that imports it. */
export const noNodeBuiltins: Plugin = {
  name: "no-node-builtins",
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /.*/ }, (args) => {
      if (!isBuiltin(args.path)) return undefined;
      const importer = args.importer === "" ? "(entry)" : relative(repoRoot, args.importer);
      return {
        errors: [
          { text: `${importer} imports the Node builtin "${args.path}"; the browser bundle cannot use Node` },
        ],
      };
    });
  },
};

export function browserBuildOptions(overrides: BuildOptions = {}): BuildOptions {
  return {
    entryPoints: [BROWSER_ENTRY],
    outfile: BROWSER_OUTFILE,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    metafile: true,
    logLevel: "silent",
    plugins: [noNodeBuiltins],
    ...overrides,
  };
}

export async function buildBrowser(overrides: BuildOptions = {}): Promise<BuildResult> {
  return build(browserBuildOptions(overrides));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    await buildBrowser();
    const bytes = statSync(BROWSER_OUTFILE).size;
    console.log(`${relative(repoRoot, BROWSER_OUTFILE)}: ${bytes} bytes (and its .map)`);
  } catch (error) {
    // esbuild's BuildFailure: its errors, one line each.
    const errors = (
      error as { errors?: { text: string; location?: { file: string; line: number } | null }[] }
    ).errors;
    if (errors === undefined) throw error;
    for (const e of errors) {
      const where = e.location ? `${e.location.file}:${e.location.line}: ` : "";
      console.error(`build:browser: ${where}${e.text}`);
    }
    process.exitCode = 1;
  }
}
