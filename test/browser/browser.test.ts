import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { basename, join, relative } from "node:path";
import { transform } from "esbuild";
import { chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { BROWSER_OUTFILE, buildBrowser, repoRoot } from "../../scripts/build-browser.ts";

/**
 * The browser bundle (src/browser.ts, built as `npm run build:browser` builds it) runs the README's
 * library example in Debian's Chromium, headless, and ends where the same example ends under Node: the
 * same bytes, the same invariant report, the same counters.
 */
/** Debian's Chromium; HMMSIM_CHROMIUM names another binary (a test of the missing-browser path, say). */
const CHROMIUM = process.env.HMMSIM_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
const browserRequired = process.env.HMMSIM_REQUIRE_BROWSER === "1";

/** The README's library example: its first ```ts block. */
function readmeExample(): string {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const start = readme.indexOf("```ts\n");
  expect(start).toBeGreaterThan(0);
  return readme.slice(start + 6, readme.indexOf("```", start + 6));
}

/** The README's page for the browser: the ```html block of its "In the browser" section. */
function readmePage(): string {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const section = readme.indexOf("## In the browser\n");
  expect(section).toBeGreaterThan(0);
  const start = readme.indexOf("```html\n", section);
  expect(start).toBeGreaterThan(section);
  return readme.slice(start + 8, readme.indexOf("```", start + 8));
}

/**
 * Run after the example, in the example's scope. First what the example ended with: its invariant
 * report and the kernel's counters (`kernel.stats`), then the whole mapping read back through the CPU
 * (the pages still on the device fault back). Then a round trip with bytes worth comparing: a
 * pseudo-random pattern over all 16 pages, migrated to the device and read back by the device and by
 * the CPU. Bytes are summed with FNV-1a and sampled as little-endian words.
 */
const EPILOGUE = `
export const result = (() => {
  const invariants = system.checkInvariants();
  const stats = { ...system.kernel.stats };
  const length = 16 * 4096;
  const fnv1a = (bytes) => {
    let h = 0x811c9dc5;
    for (const byte of bytes) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
    return h.toString(16).padStart(8, "0");
  };
  const offsets = [0, 4, 8, 12, 16];
  for (let page = 1; page < 16; page++) offsets.push(page * 4096, page * 4096 + 2044);
  offsets.push(length - 4);
  const words = (bytes) => {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return offsets.map((offset) => [offset, view.getUint32(offset, true)]);
  };
  const bytes = proc.read(addr, length);
  const pattern = new Uint8Array(length);
  let x = 0x2545f491;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    pattern[i] = x & 0xff;
  }
  proc.write(addr, pattern);
  const migrated = dev.migrateToDevice(addr, 16).cpages;
  const deviceRead = dev.read(addr, 16);
  const snapshot = Array.from(dev.snapshot(addr, 16));
  const cpuRead = proc.read(addr, length);
  return {
    invariants,
    stats,
    length: bytes.length,
    checksum: fnv1a(bytes),
    words: words(bytes),
    text: new TextDecoder().decode(bytes.subarray(0, 13)),
    roundTrip: {
      migrated,
      patternChecksum: fnv1a(pattern),
      deviceChecksum: fnv1a(deviceRead.data),
      cpuChecksum: fnv1a(cpuRead),
      words: words(cpuRead),
      snapshot,
    },
    finalInvariants: system.checkInvariants(),
    finalStats: { ...system.kernel.stats },
    usedPages: system.usedPages,
  };
})();
`;

interface ExampleResult {
  invariants: string[];
  stats: Record<string, number>;
  length: number;
  checksum: string;
  words: [number, number][];
  text: string;
  roundTrip: {
    migrated: number;
    patternChecksum: string;
    deviceChecksum: string;
    cpuChecksum: string;
    words: [number, number][];
    snapshot: number[];
  };
  finalInvariants: string[];
  finalStats: Record<string, number>;
  usedPages: number;
}

/** A stand-in for node:assert/strict with the two asserts the example uses, for the page. */
const ASSERT_SHIM = `
const fail = (what, actual, expected) => {
  throw new Error("assert." + what + ": " + JSON.stringify(actual) + " !== " + JSON.stringify(expected));
};
export default {
  equal(actual, expected) { if (!Object.is(actual, expected)) fail("equal", actual, expected); },
  deepEqual(actual, expected) {
    if (JSON.stringify(actual) !== JSON.stringify(expected)) fail("deepEqual", actual, expected);
  },
};
`;

/** The example's module specifiers, each rewritten by `to`; one it does not expect fails the test. */
function rewriteImports(code: string, to: (spec: string) => string): string {
  return code.replace(/from "([^"]+)"/g, (_, spec: string) => `from "${to(spec)}"`);
}

function pageImport(spec: string): string {
  if (spec === "node:assert/strict") return "./assert.js";
  if (spec.startsWith("./src/")) return "./hmmsim.js";
  throw new Error(`the README's example imports ${spec}; the browser test knows only ./src/ and node:assert`);
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>hmmsim in the browser</title>
<link rel="icon" href="data:,">
<script type="module">
  import("./example.js").then(
    (module) => { window.hmmsimResult = module.result; },
    (error) => { window.hmmsimError = String((error && error.stack) || error); },
  );
</script>
`;

async function runInNode(code: string): Promise<ExampleResult> {
  const dir = mkdtempSync(join(repoRoot, "test", ".readme-browser-"));
  try {
    const file = join(dir, "example.ts");
    writeFileSync(file, code.replaceAll('"./src/', `"${repoRoot}/src/`) + EPILOGUE);
    const module = (await import(file)) as { result: ExampleResult };
    return module.result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function serve(
  files: Map<string, { type: string; body: string | Uint8Array }>,
  served: string[],
): Promise<Server> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const file = files.get(path === "/" ? "/index.html" : path);
    served.push(path);
    if (file === undefined) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(file.body);
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done(server)));
}

describe("the browser bundle", () => {
  const servers: Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((server) => new Promise((done) => server.close(done))));
  });

  type Served = [string, { type: string; body: string | Uint8Array }];
  /** Serves `files` and the bundle (built in memory, as build:browser builds it) on 127.0.0.1. */
  async function serveWithBundle(files: Served[]): Promise<{ port: number; served: string[] }> {
    const built = await buildBrowser({ write: false });
    const all = new Map(files);
    for (const file of built.outputFiles!) {
      const type = file.path.endsWith(".map") ? "application/json" : "text/javascript";
      all.set(`/${basename(file.path)}`, { type, body: file.contents });
    }
    const served: string[] = [];
    const server = await serve(all, served);
    servers.push(server);
    return { port: (server.address() as AddressInfo).port, served };
  }

  it("bundles only the core, with no require shim", async () => {
    const result = await buildBrowser({ write: false });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile!.inputs);
    expect(inputs).toContain("src/browser.ts");
    expect(inputs).toContain("src/system.ts");
    expect(inputs.filter((input) => !input.startsWith("src/") || input.startsWith("src/cli/"))).toEqual([]);
    const outputs = result.outputFiles!.map((file) => relative(repoRoot, file.path)).sort();
    expect(outputs).toEqual(["dist/browser/hmmsim.js", "dist/browser/hmmsim.js.map"]);
    const js = result.outputFiles!.find((file) => file.path === BROWSER_OUTFILE)!.text;
    expect(js).not.toContain("__require");
    expect(js).toContain("export {");
    expect(js).toContain("//# sourceMappingURL=hmmsim.js.map");
  });

  it("refuses a Node builtin, with or without node:", async () => {
    const failure = buildBrowser({
      entryPoints: [],
      stdin: {
        contents:
          'import { readFileSync } from "node:fs";\nimport { cpus } from "os";\nexport const x = [readFileSync, cpus];',
        resolveDir: join(repoRoot, "src"),
        sourcefile: "src/uses-node.ts",
        loader: "ts",
      },
      write: false,
    });
    await expect(failure).rejects.toMatchObject({
      errors: [
        expect.objectContaining({ text: expect.stringContaining('the Node builtin "node:fs"') }),
        expect.objectContaining({ text: expect.stringContaining('the Node builtin "os"') }),
      ],
    });
  });

  const why = haveChromium
    ? ""
    : browserRequired
      ? ` (${CHROMIUM} is missing, and HMMSIM_REQUIRE_BROWSER=1 makes that a failure)`
      : ` (skipped: ${CHROMIUM} is missing; apt-get install chromium, or set HMMSIM_REQUIRE_BROWSER=1 to fail)`;
  it.skipIf(!haveChromium && !browserRequired)(
    `runs the README's library example in headless Chromium as it runs in Node${why}`,
    async () => {
      expect(existsSync(CHROMIUM), `${CHROMIUM} is missing and HMMSIM_REQUIRE_BROWSER=1`).toBe(true);
      const example = readmeExample();
      const inNode = await runInNode(example);

      const pageCode = await transform(rewriteImports(example, pageImport) + EPILOGUE, {
        loader: "ts",
        format: "esm",
        target: "es2022",
      });
      const { port, served } = await serveWithBundle([
        ["/index.html", { type: "text/html; charset=utf-8", body: PAGE }],
        ["/example.js", { type: "text/javascript", body: pageCode.code }],
        ["/assert.js", { type: "text/javascript", body: ASSERT_SHIM }],
      ]);
      const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
      const pageErrors: string[] = [];
      try {
        const page = await browser.newPage();
        page.on("pageerror", (error) => pageErrors.push(String(error)));
        page.on("console", (message) => {
          if (message.type() === "error") pageErrors.push(message.text());
        });
        await page.goto(`http://127.0.0.1:${port}/`);
        await page.waitForFunction(() => "hmmsimResult" in globalThis || "hmmsimError" in globalThis);
        const outcome = await page.evaluate(() => {
          const g = globalThis as unknown as { hmmsimResult?: unknown; hmmsimError?: string };
          return { result: g.hmmsimResult, error: g.hmmsimError ?? null };
        });
        const userAgent = await page.evaluate(
          () => (globalThis as unknown as { navigator: { userAgent: string } }).navigator.userAgent,
        );
        expect(outcome.error).toBeNull();
        expect(pageErrors).toEqual([]);
        expect(userAgent).toContain("HeadlessChrome");
        // The page ran the bundle served here, not something else.
        expect(served).toEqual(expect.arrayContaining(["/", "/example.js", "/hmmsim.js", "/assert.js"]));

        const inBrowser = outcome.result as ExampleResult;
        // The example's own asserts held in both (it threw otherwise); what it ended with:
        expect(inNode.text).toBe("hello, device");
        expect(inNode.invariants).toEqual([]);
        expect(inNode.stats.deviceFaults).toBe(1);
        expect(inNode.roundTrip.migrated).toBe(16);
        expect(inNode.roundTrip.deviceChecksum).toBe(inNode.roundTrip.patternChecksum);
        expect(inNode.roundTrip.cpuChecksum).toBe(inNode.roundTrip.patternChecksum);
        expect(inNode.finalInvariants).toEqual([]);
        expect(inBrowser.length).toBe(inNode.length);
        expect(inBrowser.checksum).toBe(inNode.checksum);
        expect(inBrowser.words).toEqual(inNode.words);
        expect(inBrowser.text).toBe(inNode.text);
        expect(inBrowser.invariants).toEqual(inNode.invariants);
        expect(inBrowser.stats).toEqual(inNode.stats);
        expect(inBrowser.roundTrip.cpuChecksum).toBe(inNode.roundTrip.cpuChecksum);
        expect(inBrowser.roundTrip.words).toEqual(inNode.roundTrip.words);
        expect(inBrowser).toEqual(inNode);
      } finally {
        await browser.close();
      }
    },
  );

  it.skipIf(!haveChromium && !browserRequired)(
    `runs the README's "In the browser" page in headless Chromium and logs what its comments say${why}`,
    async () => {
      expect(existsSync(CHROMIUM), `${CHROMIUM} is missing and HMMSIM_REQUIRE_BROWSER=1`).toBe(true);
      const html = `<!doctype html>\n<meta charset="utf-8">\n<link rel="icon" href="data:,">\n${readmePage()}`;
      const { port, served } = await serveWithBundle([
        ["/index.html", { type: "text/html; charset=utf-8", body: html }],
      ]);
      const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
      try {
        const page = await browser.newPage();
        const logs: string[] = [];
        const pageErrors: string[] = [];
        page.on("pageerror", (error) => pageErrors.push(String(error)));
        page.on("console", (message) => {
          if (message.type() === "log") logs.push(message.text());
          else pageErrors.push(message.text());
        });
        await page.goto(`http://127.0.0.1:${port}/`);
        // The listener and the wait are registered in the same turn, so no message is missed.
        while (logs.length < 4 && pageErrors.length === 0) await page.waitForEvent("console");
        expect(pageErrors).toEqual([]);
        expect(served).toEqual(expect.arrayContaining(["/", "/hmmsim.js"]));
        expect(logs).toEqual(["16", "true", "hello, device", "[]"]);
      } finally {
        await browser.close();
      }
    },
  );
});
