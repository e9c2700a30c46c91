/**
 * The defect catalogue under the explorer, as `hmmsim explore --defect ID` runs it: each defect is
 * found with the default strategy, of its kind, with a shrunk schedule of at most 30 choice points
 * that replays to the same violation; with `--fixed` the same scenario's bounded space is exhausted
 * and nothing is found.
 */
import { describe, expect, it } from "vitest";
import { DEFECT_SCENARIOS, scenarioOfDefect } from "../../src/explore/catalogue.js";
import { explore, replayFinding } from "../../src/explore/explore.js";
import { defectConfig } from "../../src/explore/scenario.js";
import { parseSchedule } from "../../src/explore/schedule.js";

const EXPECTED_IDS = [
  "seed-leak",
  "S2",
  "S3",
  "S4",
  "S10",
  "S11",
  "S12",
  "CVE-2022-3523",
  "1afaeb8293c9",
  "test_hmm-own-write",
  "test_hmm-second-open",
  "test_hmm-read-race",
  "test_hmm-exclusive-zap",
];

describe("the defect catalogue", () => {
  it("has every defect of KERNEL-NOTES section 9 the model can express", () => {
    expect(DEFECT_SCENARIOS.map((scenario) => scenario.defect?.id)).toEqual(EXPECTED_IDS);
  });

  for (const id of EXPECTED_IDS) {
    it(`${id}: found, shrunk, replayed; the fixed kernel exhausts the same scenario`, () => {
      const scenario = scenarioOfDefect(id)!;
      const found = explore(scenario, { defect: true, seconds: 30 });
      const finding = found.finding;
      expect(finding, `${id} not found in ${found.executions} executions`).not.toBeNull();
      expect(finding!.violation.kind).toBe(scenario.defect!.kind);
      expect(finding!.choicePoints).toBeLessThanOrEqual(30);
      const schedule = parseSchedule(finding!.schedule, (name) =>
        name === scenario.name ? scenario.operations.length : null,
      );
      expect(schedule.config).toEqual(defectConfig(scenario));
      const replayed = replayFinding(scenario, schedule.config, schedule.keep, schedule.deviations);
      expect(replayed?.violation).toEqual(finding!.violation);
      const fixed = explore(scenario, { seconds: 30 });
      expect(fixed.finding?.violation.message ?? null).toBeNull();
      expect(fixed.complete).toBe(true);
    });
  }

  it("keeps the fixed kernels clean with the invariant checker after every step", () => {
    for (const id of ["S3", "S12", "test_hmm-read-race", "1afaeb8293c9"]) {
      const scenario = scenarioOfDefect(id)!;
      const fixed = explore(scenario, { checkEachStep: true, seconds: 30 });
      expect(fixed.finding?.violation.message ?? null, id).toBeNull();
      expect(fixed.complete, id).toBe(true);
    }
  });

  it("finds them whatever the order alternatives are tried in (another seed)", () => {
    for (const id of ["S3", "S12", "test_hmm-own-write"]) {
      const scenario = scenarioOfDefect(id)!;
      const finding = explore(scenario, { defect: true, seed: 77, seconds: 30 }).finding;
      expect(finding?.violation.kind, id).toBe(scenario.defect!.kind);
    }
  });
});
