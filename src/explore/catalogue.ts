/**
 * The built-in scenarios: the defect catalogue (KERNEL-NOTES section 9: each historical defect with
 * the switch that brings it back) and scenarios of the fixed kernel.
 */
import type { Scenario } from "./scenario.js";
import { migrateVsCpuScenario } from "./scenarios/migrate-vs-cpu.js";
import { s12Scenario } from "./scenarios/s12.js";

export const SCENARIOS: readonly Scenario[] = [s12Scenario, migrateVsCpuScenario];

export function scenarioNamed(name: string): Scenario | null {
  return SCENARIOS.find((scenario) => scenario.name === name) ?? null;
}

/** The catalogue's scenario for defect `id` (its id, as `--defect` takes it). */
export function scenarioOfDefect(id: string): Scenario | null {
  return SCENARIOS.find((scenario) => scenario.defect?.id === id) ?? null;
}
