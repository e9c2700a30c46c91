/**
 * What the explorer explores: a scenario is a small system, a few operations that each run as a
 * thread, and what must hold at the end. The explorer builds it afresh for every execution (nothing is
 * cloned), so `build` must be cheap and deterministic: the same configuration and operations give the
 * same system, thread by thread.
 */

import type { DmirrorSwitches } from "../drivers/dmirror_devmem.js";
import type { ProtocolVersion } from "../mm/kernel.js";
import type { FaultPathSwitches } from "../mm/memory.js";
import type { MigrateSwitches } from "../mm/migrate_pfn.js";
import type { Kfn } from "../sched/thread.js";
import type { System, SystemOptions } from "../system.js";

/** The value of one switch: most are booleans, a few name a behaviour ("none" | "clear" | "migrate"). */
export type SwitchValue = boolean | string;

/**
 * The kernel an execution runs: a protocol version and switch overrides on top of it, each named by
 * its group and field: `migrate.prepareTrylock`, `fault.migrationWaitTakesRef`,
 * `dmirror.invalidateOnOwnMigration`. A schedule string carries it, so a replay needs nothing else.
 */
export interface ExploreConfig {
  readonly protocol: ProtocolVersion;
  readonly switches: Readonly<Record<string, SwitchValue>>;
}

/** One operation of a scenario: it runs as one thread. */
export interface ScenarioOperation {
  /** What it does, as the report's column heading says it: "CPU store vpn 1", "device 0 MIGRATE_TO_DEV". */
  readonly name: string;
}

/** One thread of a built scenario: the body of operation `op`. */
export interface ScenarioThread {
  /** Index of the operation in Scenario.operations: the thread's stable id in schedules. */
  readonly op: number;
  /** The CPU it runs on (its TLB, its LRU batch). */
  readonly cpu: number;
  readonly body: Kfn<unknown>;
  /**
   * What the operation observed, for the data oracle: the value a load read, say, from the thread's
   * result. Omitted for operations that observe nothing (a migration's cpages depends on timing, not
   * on data, so it is not an observation).
   */
  observe?(result: unknown): string;
}

/** A scenario built for one execution. */
export interface ScenarioSetup {
  readonly system: System;
  /** The threads of the operations kept, in operation order. */
  readonly threads: readonly ScenarioThread[];
  /** The final state the data oracle compares: the bytes the process sees, say. Runs after every thread ends. */
  observeFinal?(): string;
  /** Further checks at the end, one line per violation (beyond the invariant checker and the oracles). */
  check?(): string[];
  /**
   * Where the report's table looks: user addresses whose PTE, and the page it names (refcount,
   * mapcount, lock, flags), are printed in the row of each step that changes them.
   */
  readonly watch?: readonly { process: number; vpn: number }[];
}

/** The kind of a violation the explorer reports. */
export type ViolationKind = "deadlock" | "livelock" | "use-after-free" | "invariant" | "data" | "assertion";

/**
 * A concurrency scenario: a default kernel configuration, the operations that run as concurrent threads, how
 * to build them, and the defect it can demonstrate.
 */
export interface Scenario {
  /** Stable name, used in schedules and on the command line: letters, digits, `-`, `_` and `.`. */
  readonly name: string;
  readonly description: string;
  /** The fixed kernel this scenario runs on by default. */
  readonly config: ExploreConfig;
  /**
   * For a scenario of the defect catalogue: the defect's id (KERNEL-NOTES section 9), the switches that
   * bring it back on top of `config`, and the kind of violation it shows.
   */
  readonly defect?: {
    readonly id: string;
    /** The protocol the defect lived in, when not the fixed kernel's (the seed's leak, fixed in 4.14). */
    readonly protocol?: ProtocolVersion;
    readonly switches: Readonly<Record<string, SwitchValue>>;
    readonly kind: ViolationKind;
  };
  readonly operations: readonly ScenarioOperation[];
  /** Builds the system and one thread per operation kept (`keep[i]` false drops operation i). */
  build(config: ExploreConfig, keep: readonly boolean[]): ScenarioSetup;
  /** Compare observations with those of every serial order of the operations (default true). */
  readonly serialOracle?: boolean;
  /** Run the invariant checker at the end of each execution (default true). */
  readonly invariants?: boolean;
  /** Preemption bound of the default depth-first search (default 2). */
  readonly preemptions?: number;
}

/** The groups a switch name may start with, and the SystemOptions field each sets. */
const SWITCH_GROUPS = ["migrate", "fault", "dmirror"] as const;
type SwitchGroup = (typeof SWITCH_GROUPS)[number];

/** Splits "migrate.prepareTrylock" into its group and field, or null when the group is unknown. */
export function parseSwitchName(name: string): { group: SwitchGroup; field: string } | null {
  const dot = name.indexOf(".");
  if (dot <= 0 || dot === name.length - 1) return null;
  const group = name.slice(0, dot);
  if (!(SWITCH_GROUPS as readonly string[]).includes(group)) return null;
  return { group: group as SwitchGroup, field: name.slice(dot + 1) };
}

/**
 * The SystemOptions that give `config`'s kernel: its protocol and its switch overrides. `base` holds
 * the rest (RAM, devices, store); a scenario's build passes its own.
 */
export function systemOptionsFor(config: ExploreConfig, base: SystemOptions): SystemOptions {
  const migrateSwitches: Record<string, SwitchValue> = { ...base.migrateSwitches };
  const faultSwitches: Record<string, SwitchValue> = { ...base.faultSwitches };
  const dmirror: Record<string, SwitchValue> = { ...base.dmirror };
  for (const [name, value] of Object.entries(config.switches)) {
    const parsed = parseSwitchName(name);
    if (parsed === null) throw new Error(`unknown switch ${name}`);
    const into =
      parsed.group === "migrate" ? migrateSwitches : parsed.group === "fault" ? faultSwitches : dmirror;
    into[parsed.field] = value;
  }
  return {
    ...base,
    protocol: config.protocol,
    migrateSwitches: migrateSwitches as Partial<Omit<MigrateSwitches, "protocol">>,
    faultSwitches: faultSwitches as Partial<FaultPathSwitches>,
    dmirror: dmirror as Partial<DmirrorSwitches>,
  };
}

/** The configuration that brings a scenario's defect back (or the fixed kernel when it has none). */
export function defectConfig(scenario: Scenario): ExploreConfig {
  if (scenario.defect === undefined) return scenario.config;
  if (scenario.defect.protocol !== undefined && scenario.defect.protocol !== scenario.config.protocol)
    return { protocol: scenario.defect.protocol, switches: { ...scenario.defect.switches } };
  return {
    protocol: scenario.config.protocol,
    switches: { ...scenario.config.switches, ...scenario.defect.switches },
  };
}
