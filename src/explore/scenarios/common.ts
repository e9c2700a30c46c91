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
import { peekWords } from "../observe.js";
import {
  type ExploreConfig,
  type ScenarioSetup,
  type ScenarioThread,
  systemOptionsFor,
} from "../scenario.js";

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

/** The value the catalogue's CPU stores write over a page. */
export const STORED = 0x5a5a;

/** How deviceVsCpu builds its system and its device thread. */
export interface DeviceVsCpuOptions {
  /** System options beyond smallSystem's (device 0's kind, say). */
  readonly extra?: SystemOptions;
  /** Runs before the threads, on the filled buffer (a migration that puts it on the device, say). */
  readonly prepare?: (fd: DeviceFile, addr: number) => void;
  /** The device command of operation 0 on the buffer's 2 pages. */
  readonly command: (fd: DeviceFile, vpn: number) => Kfn<unknown>;
  /** The CPUs of the device command, the store and the load (default 2, 0, 1). */
  readonly cpus?: readonly [number, number, number];
}

/**
 * The build of a device command on a filled 2-page buffer racing a CPU store of STORED to page 0 and a
 * CPU load of page 1, on device 0, with 3 CPUs. The command's result is no observation: migration is
 * best effort (a page the CPU holds stays behind), and EXCLUSIVE reads back after mmap_read_unlock, so
 * a CPU access may revoke a page first (-ENOENT).
 */
export function deviceVsCpu(
  config: ExploreConfig,
  keep: readonly boolean[],
  options: DeviceVsCpuOptions,
): ScenarioSetup {
  const system = smallSystem(config, 1, { cpus: 3, ...options.extra });
  const proc = system.spawn();
  const fd = system.device(0).open(proc);
  const addr = proc.mmap(2 * PAGE_SIZE);
  proc.fillPages(addr, 2, 1);
  options.prepare?.(fd, addr);
  const vpn = vpnOf(addr);
  const [deviceCpu, storeCpu, loadCpu] = options.cpus ?? [2, 0, 1];
  const threads: ScenarioThread[] = [];
  if (keep[0]) threads.push({ op: 0, cpu: deviceCpu, body: options.command(fd, vpn) });
  if (keep[1]) threads.push({ op: 1, cpu: storeCpu, body: cpuStore(proc, vpn, STORED) });
  if (keep[2]) threads.push({ op: 2, cpu: loadCpu, body: cpuLoad(proc, vpn + 1), observe: loaded });
  return {
    system,
    threads,
    observeFinal: () => peekWords(proc, vpn, 2),
    watch: [
      { process: proc.pid, vpn },
      { process: proc.pid, vpn: vpn + 1 },
    ],
  };
}
