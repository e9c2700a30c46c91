/**
 * `hmmsim/explore`: the concurrency explorer as a library, what a scenario of your own imports (see
 * src/explore/scenarios/migrate-vs-cpu.ts and examples/gpu-driver/scenario.ts): the Scenario types and
 * systemOptionsFor, the observers, explore() and replayFinding(), the report formatters, and the
 * catalogue of built-in scenarios and defects.
 */

export { DEFECT_SCENARIOS, SCENARIOS, scenarioNamed, scenarioOfDefect } from "./explore/catalogue.js";
export type { TraceStep, Violation } from "./explore/execution.js";
export * from "./explore/explore.js";
export { peekWord, peekWords } from "./explore/observe.js";
export * from "./explore/report.js";
export * from "./explore/scenario.js";
export type { StrategyName } from "./explore/strategies.js";
export type { Kfn } from "./sched/thread.js";
