/**
 * Building blocks of the catalogue's scenarios: a small system for a configuration, and the thread
 * bodies most of them run (a CPU load or store of one page, a device READ), each through the
 * generator forms the model already has, so that a scenario costs one small build per execution.
 */
import { PAGE_SIZE } from "../../base/units.js";
import type { DeviceFile } from "../../device.js";
import type { Process } from "../../process.js";
import type { Kfn } from "../../sched/thread.js";
import { System, type SystemOptions } from "../../system.js";
import { type ExploreConfig, systemOptionsFor } from "../scenario.js";

/** 1 MiB of RAM, the tokens store and `devices` devices of 64 KiB each, under `config`'s kernel. */
export function smallSystem(config: ExploreConfig, devices = 1, extra: SystemOptions = {}): System {
  const base: SystemOptions = {
    ram: "1MiB",
    store: "tokens",
    devices: Array.from({ length: devices }, () => ({ memory: "64KiB" })),
    ...extra,
  };
  return new System(systemOptionsFor(config, base));
}

/** A CPU load of the page at vpn: its first word (tokens: its version), or the negative signal code. */
export function* cpuLoad(proc: Process, vpn: number): Kfn<number> {
  const pfn = yield* proc.accessPage(vpn, false);
  return pfn < 0 ? pfn : proc.system.kernel.store.word(pfn);
}

/** A CPU store of `value` over the page at vpn; returns the pfn written, or the negative signal code. */
export function* cpuStore(proc: Process, vpn: number, value: number): Kfn<number> {
  const pfn = yield* proc.accessPage(vpn, true);
  if (pfn >= 0) proc.system.kernel.store.fill(pfn, value);
  return pfn;
}

/** HMM_DMIRROR_READ of npages through `fd`: each page's first word, or the errno the command returned. */
export function* deviceRead(fd: DeviceFile, vpn: number, npages: number): Kfn<string> {
  const words = new Uint32Array(npages);
  const ret = yield* fd.mirror.cmdRead(vpn, npages, null, words);
  return typeof ret === "number" ? `errno ${-ret}` : [...words].join(",");
}

/** A migration command's outcome in words: its cpages, or its errno. */
export function migrated(ret: unknown): string {
  if (typeof ret === "number") return `errno ${-ret}`;
  return `cpages ${(ret as { cpages: number }).cpages}`;
}

/** The vpn of a user address. */
export function vpnOf(addr: number): number {
  return addr / PAGE_SIZE;
}

/** An observation of a CPU load: the word, or the signal it ended in. */
export function loaded(value: unknown): string {
  const word = value as number;
  return word < 0 ? `signal ${word}` : String(word);
}
