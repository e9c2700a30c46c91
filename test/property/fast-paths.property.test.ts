/**
 * The migration core's fast paths (System option `fastPaths`, default on) change speed, never state:
 * random ranges of pages in every state collect can meet are migrated to a device (sometimes with its
 * first allocation failing, so that a page is restored), partly faulted back by the CPU and migrated
 * back, once with the fast paths and once without, and everything a user or the
 * invariant checker could look at must come out the same: each command's result or errno, the bytes
 * read back, every PTE of the range, every field of every struct page and the RSS counters (after the
 * migration to the device and at the end), the migration counters and the invariant report.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KernelError } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import type { ProtocolVersion } from "../../src/mm/kernel.js";
import { PROT_READ } from "../../src/mm/mmap.js";
import type { Process } from "../../src/process.js";
import { System } from "../../src/system.js";

/** What a page of the range is before the migration. */
type PageState = "untouched" | "zero" | "written" | "readonly" | "pinned" | "shared" | "elsewhere";
const STATES: readonly PageState[] = [
  "untouched",
  "zero",
  "written",
  "readonly",
  "pinned",
  "shared",
  "elsewhere",
];

interface Scenario {
  protocol: ProtocolVersion;
  states: PageState[];
  /** Pages the CPU writes (faulting them back) between the two migrations. */
  cpuWrites: boolean[];
  /** FAIL_ALLOC before the migration to the device: its first page stays behind and is restored. */
  failAlloc: boolean;
}

/** Runs one scenario and returns everything observable, as one JSON-comparable value. */
function observe(scenario: Scenario, fastPaths: boolean): unknown {
  const system = new System({
    ram: "4MiB",
    store: "bytes",
    protocol: scenario.protocol,
    devices: [{ memory: "1MiB" }, { memory: "1MiB" }],
    fastPaths,
  });
  const proc = system.spawn();
  const npages = scenario.states.length;
  const addr = proc.mmap(npages * PAGE_SIZE);
  const results: unknown[] = [];
  const attempt = (what: string, body: () => unknown) => {
    try {
      results.push([what, body()]);
    } catch (error) {
      if (!(error instanceof KernelError)) throw error;
      results.push([what, error.code]);
    }
  };
  const other = system.device(1).open(proc);
  let child: Process | null = null;
  const pins: number[] = [];
  scenario.states.forEach((state, i) => {
    const at = addr + i * PAGE_SIZE;
    if (state === "untouched") return;
    if (state === "zero") {
      proc.touch(at, 1, false);
      return;
    }
    proc.fillPages(at, 1, 7 + i);
    if (state === "readonly") proc.mprotect(at, PAGE_SIZE, PROT_READ);
    if (state === "pinned") pins.push(...proc.pinPages(at, 1, true));
    if (state === "elsewhere") attempt(`to device 1 at ${i}`, () => other.migrateToDevice(at, 1));
  });
  // A fork makes the pages marked shared COW-shared with a child (it unmaps the rest of its copy).
  if (scenario.states.includes("shared")) {
    child = proc.fork();
    scenario.states.forEach((state, i) => {
      if (state !== "shared") child?.munmap(addr + i * PAGE_SIZE, PAGE_SIZE);
    });
  }
  const k = system.kernel;
  const vpn = addr / PAGE_SIZE;
  const pages = k.pages;
  // The range's PTEs, every field of every struct page, and the RSS counters.
  const tables = () => ({
    ptes: Array.from({ length: npages }, (_, i) => k.pt.read(proc.mm.root, vpn + i)),
    structPages: [
      pages.flags,
      pages.refcount,
      pages.mapcount,
      pages.heldRefs,
      pages.lockHolder,
      pages.mapping,
    ].map((field) => Array.from(field)),
    rss: [proc.mm.rssAnon, proc.mm.rssFile, child?.mm.rssAnon ?? 0, child?.mm.rssFile ?? 0],
  });
  const fd = system.device(0).open(proc);
  if (scenario.failAlloc) fd.setFlags(addr);
  attempt("to device", () => fd.migrateToDevice(addr, npages));
  const onDevice = tables();
  scenario.cpuWrites.forEach((write, i) => {
    if (write && scenario.states[i] !== "readonly") proc.fillPages(addr + i * PAGE_SIZE, 1, 100 + i);
  });
  attempt("to system", () => fd.migrateToSystem(addr, npages));
  const atEnd = tables();
  // One word in 256 of each page: every page holds one value throughout (fillPages).
  const sample = (data: Uint8Array) => Array.from(data.filter((_, at) => at % 1024 === 0));
  const bytes = sample(proc.read(addr, npages * PAGE_SIZE));
  const childBytes = scenario.states.map((state, i) =>
    state === "shared" && child !== null ? sample(child.read(addr + i * PAGE_SIZE, PAGE_SIZE)) : [],
  );
  proc.unpinPages(pins);
  return {
    results,
    onDevice,
    atEnd,
    bytes,
    childBytes,
    stats: { ...k.stats },
    invariants: system.checkInvariants(),
  };
}

const scenarios: fc.Arbitrary<Scenario> = fc
  .record({
    protocol: fc.constantFrom<ProtocolVersion>("seed", "4.14", "modern"),
    // Runs of written pages are what the fast paths take, so they come up more often than the rest.
    states: fc.array(
      fc.oneof({ arbitrary: fc.constant<PageState>("written"), weight: 3 }, fc.constantFrom(...STATES)),
      {
        minLength: 1,
        maxLength: 12,
      },
    ),
    writes: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
    failAlloc: fc.boolean(),
  })
  .map(({ protocol, states, writes, failAlloc }) => ({
    protocol,
    states,
    cpuWrites: writes.slice(0, states.length),
    failAlloc,
  }));

describe("migration fast paths", () => {
  it("leave exactly the state the general code leaves", () => {
    fc.assert(
      fc.property(scenarios, (scenario) => {
        expect(observe(scenario, true)).toEqual(observe(scenario, false));
      }),
      { numRuns: 150, seed: 0x5eed },
    );
  });

  it("are what a default system runs", () => {
    expect(new System({ ram: "1MiB", devices: [] }).kernel.fastPaths).toBe(true);
    expect(new System({ ram: "1MiB", devices: [], fastPaths: false }).kernel.fastPaths).toBe(false);
  });
});
