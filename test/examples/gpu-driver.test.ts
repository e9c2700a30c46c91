/**
 * The example driver (examples/gpu-driver): the explorer finds each of its two bugs with a short
 * schedule that replays, the fixed twins exhaust their bounded space, and the driver's own invariant
 * checker runs inside checkInvariants.
 */
import { describe, expect, it } from "vitest";
import { scenarios } from "../../examples/gpu-driver/scenario.js";
import { explore, replayFinding } from "../../src/explore/explore.js";
import { parseSchedule } from "../../src/explore/schedule.js";

const named = (name: string) => scenarios.find((scenario) => scenario.name === name)!;

describe("toygpu under the explorer", () => {
  for (const bug of ["gpu-driver-own-migrate", "gpu-driver-retry-unlocked"]) {
    it(`${bug}: found by the default search, its schedule replays; the fixed driver is clean`, () => {
      const scenario = named(bug);
      const finding = explore(scenario, { seconds: 30 }).finding!;
      expect(finding).not.toBeNull();
      expect(finding.violation.kind).toBe("invariant");
      // The driver's own checker (registered with the system) is what reports it.
      expect(finding.violation.message).toMatch(
        /toygpu: device page table maps vpn 0x[0-9a-f]+ to pfn \d+ writable/,
      );
      expect(finding.choicePoints).toBeLessThanOrEqual(30);
      const schedule = parseSchedule(finding.schedule, () => scenario.operations.length);
      expect(replayFinding(scenario, schedule.config, schedule.keep, schedule.deviations)?.violation).toEqual(
        finding.violation,
      );
      const fixed = explore(named(`${bug}-fixed`), { seconds: 30 });
      expect(fixed.finding).toBeNull();
      expect(fixed.complete).toBe(true);
    });
  }

  it("evicts against a device read and a CPU store without a violation", () => {
    const result = explore(named("gpu-driver-evict"), { seconds: 30 });
    expect(result.finding).toBeNull();
    expect(result.complete).toBe(true);
  });
});
