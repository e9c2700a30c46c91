/**
 * The defect catalogue's scenarios under a plain harness: build, spawn the threads, run them under a
 * seeded random chooser, then the invariant checker, the scenario's check and the data oracle (via
 * the engine's execute, which classifies what went wrong). Each defect's violation must appear in
 * some schedule with its switch on, and none may appear on the scenario's fixed kernel. The kernel
 * scenarios (kernel.ts) must be clean in every schedule.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { execute } from "../../src/explore/execution.js";
import { defectConfig, type ExploreConfig, type Scenario } from "../../src/explore/scenario.js";
import { DEVICE_MEMORY_SCENARIOS } from "../../src/explore/scenarios/device_memory.js";
import { KERNEL_SCENARIOS } from "../../src/explore/scenarios/kernel.js";
import { s2Scenario } from "../../src/explore/scenarios/s2.js";
import { s3Scenario } from "../../src/explore/scenarios/s3.js";
import { s10Scenario } from "../../src/explore/scenarios/s10.js";
import { s11Scenario } from "../../src/explore/scenarios/s11.js";
import { seedLeakScenario } from "../../src/explore/scenarios/seed-leak.js";
import { testHmmOwnWriteScenario } from "../../src/explore/scenarios/test-hmm-own-write.js";
import { testHmmReadRaceScenario } from "../../src/explore/scenarios/test-hmm-read-race.js";
import { testHmmSecondOpenScenario } from "../../src/explore/scenarios/test-hmm-second-open.js";
import { THP_SCENARIOS } from "../../src/explore/scenarios/thp.js";
import { serialOutcomes } from "../../src/explore/serial.js";

const SEEDS = 150;

/** Violation kinds seen over SEEDS random schedules ("ok" for a clean run), with one message each. */
function randomRuns(scenario: Scenario, config: ExploreConfig, seeds = SEEDS) {
  const keep = scenario.operations.map(() => true);
  const serial = serialOutcomes(scenario, config, keep);
  const kinds = new Map<string, number>();
  const messages = new Map<string, string>();
  for (let seed = 1; seed <= seeds; seed++) {
    const rng = new Rng(seed);
    const result = execute(
      scenario,
      config,
      keep,
      { choose: (point) => point.runnable[rng.below(point.runnable.length)]! },
      { serialOutcomes: serial },
    );
    const kind = result.violation?.kind ?? "ok";
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    if (result.violation !== null && !messages.has(kind)) messages.set(kind, result.violation.message);
  }
  return { kinds, messages };
}

/** Defects whose violation random schedules reach. */
const SHOWN: readonly { scenario: Scenario; message: RegExp }[] = [
  { scenario: seedLeakScenario, message: /reference\(s\) still held with no thread running \(leaked\)/ },
  { scenario: s2Scenario, message: /stale device mirror entry: dmirror 1 .* where the CPU maps pfn/ },
  { scenario: s3Scenario, message: /waits on page lock of pfn \d+ held by thread/ },
  { scenario: s10Scenario, message: /ZONE_DEVICE page on the LRU/ },
  { scenario: s11Scenario, message: /added to an LRU list after migrating away/ },
  { scenario: testHmmOwnWriteScenario, message: /matches no serial order/ },
  {
    scenario: testHmmSecondOpenScenario,
    message: /stale device mirror entry: dmirror 0 open 2 .*a free page/,
  },
  { scenario: testHmmReadRaceScenario, message: /stale device mirror entry: dmirror 0 open 1 .*a free page/ },
];

describe("the defect catalogue under random schedules", () => {
  for (const { scenario, message } of SHOWN) {
    const defect = scenario.defect!;
    it(`${defect.id}: a ${defect.kind} with the defect, nothing on the fixed kernel`, () => {
      const broken = randomRuns(scenario, defectConfig(scenario));
      expect(broken.kinds.get(defect.kind) ?? 0, JSON.stringify([...broken.kinds])).toBeGreaterThan(0);
      expect(broken.messages.get(defect.kind)).toMatch(message);
      const fixed = randomRuns(scenario, scenario.config);
      expect([...fixed.kinds], [...fixed.messages.values()].join("\n")).toEqual([["ok", SEEDS]]);
    });
  }
});

describe("scenarios of the fixed kernel", () => {
  for (const scenario of [...KERNEL_SCENARIOS, ...DEVICE_MEMORY_SCENARIOS, ...THP_SCENARIOS]) {
    it(`${scenario.name} is clean in every random schedule`, () => {
      const { kinds, messages } = randomRuns(scenario, scenario.config, 100);
      expect([...kinds], [...messages.values()].join("\n")).toEqual([["ok", 100]]);
    });
  }
});
