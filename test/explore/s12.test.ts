/**
 * S12 on a seeded random chooser (the explorer engine takes it over later): with collect's TLB flush
 * after the PTE lock is dropped, some schedules lose the store the process makes after MADV_DONTNEED
 * returned; with the flush under the lock (60bae7370896), none does.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { defectConfig, type ExploreConfig } from "../../src/explore/scenario.js";
import { s12Scenario } from "../../src/explore/scenarios/s12.js";

const SEEDS = 300;

/** Runs the scenario under `config` with each seed's random schedule; returns the seeds that failed, with why. */
function failingSeeds(config: ExploreConfig): { seed: number; lines: string[] }[] {
  const failed: { seed: number; lines: string[] }[] = [];
  for (let seed = 1; seed <= SEEDS; seed++) {
    const setup = s12Scenario.build(config, [true, true]);
    const sched = setup.system.kernel.sched;
    const rng = new Rng(seed);
    for (const thread of setup.threads)
      sched.spawn(s12Scenario.operations[thread.op]!.name, thread.body, thread.cpu);
    sched.setChooser((runnable) => rng.below(runnable.length));
    sched.runAll();
    sched.setChooser(() => 0);
    const lines = [...(setup.check?.() ?? []), ...setup.system.checkInvariants()];
    if (lines.length > 0) failed.push({ seed, lines });
  }
  return failed;
}

describe("S12: collect's TLB flush after the PTE lock", () => {
  it("loses a write under the 4.14 order (collectFlushUnderPtl false)", () => {
    const failed = failingSeeds(defectConfig(s12Scenario));
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]!.lines.join("\n")).toMatch(
      /lost write: the store after MADV_DONTNEED returned went to the old page/,
    );
  });

  it("never loses it with the flush under the lock (modern)", () => {
    expect(failingSeeds(s12Scenario.config)).toEqual([]);
  });
});
