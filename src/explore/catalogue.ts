/**
 * The built-in scenarios: the defect catalogue (KERNEL-NOTES section 9: each historical defect with
 * the switch that brings it back) and scenarios of the fixed kernel.
 */
import type { Scenario } from "./scenario.js";
import { deviceFaultTrylockScenario } from "./scenarios/1afaeb8293c9.js";
import { cve20223523Scenario } from "./scenarios/cve-2022-3523.js";
import { DEVICE_MEMORY_SCENARIOS } from "./scenarios/device_memory.js";
import { KERNEL_SCENARIOS } from "./scenarios/kernel.js";
import { migrateVsCpuScenario } from "./scenarios/migrate-vs-cpu.js";
import { s2Scenario } from "./scenarios/s2.js";
import { s3Scenario } from "./scenarios/s3.js";
import { s4Scenario } from "./scenarios/s4.js";
import { s10Scenario } from "./scenarios/s10.js";
import { s11Scenario } from "./scenarios/s11.js";
import { s12Scenario } from "./scenarios/s12.js";
import { seedLeakScenario } from "./scenarios/seed-leak.js";
import { testHmmExclusiveZapScenario } from "./scenarios/test-hmm-exclusive-zap.js";
import { testHmmOwnWriteScenario } from "./scenarios/test-hmm-own-write.js";
import { testHmmReadRaceScenario } from "./scenarios/test-hmm-read-race.js";
import { testHmmSecondOpenScenario } from "./scenarios/test-hmm-second-open.js";
import { THP_SCENARIOS } from "./scenarios/thp.js";

/** The defect catalogue, in KERNEL-NOTES order. */
export const DEFECT_SCENARIOS: readonly Scenario[] = [
  seedLeakScenario,
  s2Scenario,
  s3Scenario,
  s4Scenario,
  s10Scenario,
  s11Scenario,
  s12Scenario,
  cve20223523Scenario,
  deviceFaultTrylockScenario,
  testHmmOwnWriteScenario,
  testHmmSecondOpenScenario,
  testHmmReadRaceScenario,
  testHmmExclusiveZapScenario,
];

export const SCENARIOS: readonly Scenario[] = [
  ...DEFECT_SCENARIOS,
  migrateVsCpuScenario,
  ...KERNEL_SCENARIOS,
  ...DEVICE_MEMORY_SCENARIOS,
  ...THP_SCENARIOS,
];

export function scenarioNamed(name: string): Scenario | null {
  return SCENARIOS.find((scenario) => scenario.name === name) ?? null;
}

/** The catalogue's scenario for defect `id` (its id, as `--defect` takes it). */
export function scenarioOfDefect(id: string): Scenario | null {
  return SCENARIOS.find((scenario) => scenario.defect?.id === id) ?? null;
}
