/**
 * The surface property test (surface.property.test.ts) runs the corrected dmirror driver
 * (`dmirror: { invalidateOnOwnMigration: true }`), because lib/test_hmm.c itself leaves its mirrors
 * incoherent in four windows (DmirrorSwitches in src/drivers/dmirror_devmem.ts). This file shows that
 * the same property, narrowed to the operations of each window, finds it under the faithful default
 * (`dmirror: {}`), with the symptom the window has: a lost write (no serial order explains the bytes)
 * or a stale mirror entry the invariant checker names ("stale device mirror entry"). It also keeps
 * the one hang of test_hmm.c the property's concurrent mode stays away from: HMM_DMIRROR_RELEASE
 * waiting for ever in memunmap_pages for a page a racing MIGRATE_TO_DEV took from the chunk.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { DeadlockError } from "../../src/sched/scheduler.js";
import { System } from "../../src/system.js";
import { allowedOps, stepsArbitrary } from "./surface/ops.js";
import { SurfaceRun } from "./surface/runner.js";

interface Window {
  name: string;
  /** HMMSIM_FUZZ_OPS syntax (surface/ops.ts allowedOps). */
  ops: string;
  concurrent: boolean;
  /** What the property's failure must say. */
  symptom: RegExp;
}

const WINDOWS: Window[] = [
  {
    name: "(a) a WRITE racing the same open's MIGRATE_TO_DEV is lost",
    ops: "fill,group:dev:write,group:dev:toDevice",
    concurrent: true,
    symptom: /no serial order explains the result/,
  },
  {
    name: "(b) a second open of the device keeps mirroring the page the first migrated away",
    ops: "open,dev:read,dev:toDevice",
    concurrent: false,
    symptom: /^ {2}stale device mirror entry: .* where the CPU maps /m,
  },
  {
    name: "(c) a READ racing MIGRATE_TO_DEV mirrors the page being migrated away",
    ops: "fill,group:dev:read,group:dev:toDevice",
    concurrent: true,
    symptom: /^ {2}stale device mirror entry: /m,
  },
  {
    name: "(d) MADV_DONTNEED racing MIGRATE_TO_DEV leaves a mirror entry of a device page it frees",
    ops: "fill,group:madvise,group:dev:toDevice",
    concurrent: true,
    symptom: /^ {2}stale device mirror entry: .*, a free page$/m,
  },
];

/** The property on `dmirror`, narrowed to a window's operations; the first failure's message, or null. */
function firstFailure(
  window: Window,
  dmirror: { invalidateOnOwnMigration?: boolean },
  numRuns = 400,
): string | null {
  const result = fc.check(
    fc.property(
      stepsArbitrary({
        concurrent: window.concurrent,
        allowed: allowedOps(window.ops),
        maxLength: 4,
        hostile: false,
        groupWeight: 54,
      }),
      (steps) => {
        new SurfaceRun({ protocol: "modern", store: "bytes", dmirror }).run(steps);
      },
    ),
    { seed: 0x5eed, numRuns, endOnFailure: true },
  );
  if (process.env.HMMSIM_FUZZ_STATS !== undefined) console.log(`${window.name}: ${result.numRuns} runs`);
  return result.failed ? String(result.errorInstance) : null;
}

describe("the surface property under test_hmm.c's own driver (dmirror: {})", () => {
  for (const window of WINDOWS) {
    it(`finds window ${window.name}`, () => {
      const failure = firstFailure(window, {});
      expect(failure, "the property passed on the faithful driver").not.toBeNull();
      expect(failure).toMatch(window.symptom);
    });
  }

  it("passes the same narrowed runs with the corrected driver", () => {
    for (const window of WINDOWS)
      expect(firstFailure(window, { invalidateOnOwnMigration: true }, 40), window.name).toBeNull();
  });
});

describe("HMM_DMIRROR_RELEASE racing MIGRATE_TO_DEV on the same device (modern)", () => {
  // dmirror_device_remove_chunks marks a chunk removed, drops its free pages, evicts it and waits in
  // memunmap_pages until every page of it is free. A migration that took a page of the chunk before
  // it was marked is still holding it locked when the eviction passes (migrate_device_pfn_lock's
  // trylock fails), then maps it: the wait never ends while the page stays mapped. hmmsim's scheduler
  // reports it as a deadlock, which is why the property's groups never run RELEASE.
  it("waits for ever in memunmap_pages in some schedules, whatever the driver switches", () => {
    let hangs = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const system = new System({
        ram: "1MiB",
        protocol: "modern",
        devices: [{ memory: "64KiB" }],
        dmirror: { invalidateOnOwnMigration: true },
      });
      const proc = system.spawn();
      const addr = proc.mmap(PAGE_SIZE);
      proc.fillPages(addr, 1, 3);
      const fd = system.device(0).open(proc);
      const sched = system.kernel.sched;
      sched.spawn("migrate", fd.mirror.cmdMigrateToDevice(addr / PAGE_SIZE, 1), 0);
      sched.spawn("release", fd.mirror.cmdRelease(), 1);
      const rng = new Rng(seed);
      sched.setChooser((runnable) => rng.below(runnable.length));
      try {
        sched.runAll();
      } catch (error) {
        expect(error).toBeInstanceOf(DeadlockError);
        expect(String((error as Error).message)).toMatch(
          /memunmap_pages of pagemap \d+ \(1 pages still in use\)/,
        );
        hangs++;
      }
    }
    expect(hangs).toBeGreaterThan(0);
  });
});
