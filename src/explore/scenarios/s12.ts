/**
 * S12 (KERNEL-NOTES section 9): migrate_vma_collect_pmd replaced PTEs by migration entries under the
 * PTE lock but flushed the TLB only after dropping it (4.14 to 5.19). A MADV_DONTNEED that takes the
 * lock in that window finds migration entries, which no TLB caches, so it clears them without a flush
 * and returns; a CPU whose TLB still holds the old writable entry then stores into the page being
 * migrated away, and the store is lost: after the collect's late flush the address reads zeros.
 * 60bae7370896 ("mm/migrate_device.c: flush TLB while holding PTL", 6.0) closed the window.
 *
 * The scenario: one page, written before the threads start by the process on CPU 0 (so CPU 0's TLB
 * holds a writable dirty entry for it). Device 0 migrates it to device memory (CPU 1) while the process
 * (CPU 0) calls madvise(MADV_DONTNEED) on it, then stores a value and loads it back. Whatever the
 * order, the migration never changes what the process sees, so its load and the final contents must
 * be the value it stored after madvise returned.
 *
 * The companion half of S12, the PTE dirty bit collect did not move to the page (fd35ca3d12cc), loses
 * data only through swap, which hmmsim does not have; the scenario leaves collectCopiesDirty alone.
 */
import { PAGE_SIZE } from "../../base/units.js";
import { sysMadvise } from "../../mm/madvise.js";
import { MADV_DONTNEED } from "../../mm/mman.js";
import { isDevicePrivateEntry, pteFrame, ptePresent } from "../../mm/pgtable.js";
import type { Kfn } from "../../sched/thread.js";
import { System } from "../../system.js";
import {
  type ExploreConfig,
  type Scenario,
  type ScenarioSetup,
  type ScenarioThread,
  systemOptionsFor,
} from "../scenario.js";

/** What the page holds before the threads start, and what the process stores after madvise. */
const BEFORE = 0x0a0a0a0a;
const STORED = 0x5b5b5b5b;

/** The CPUs: the process and its TLB on 0, the migrating driver on 1. */
const PROCESS_CPU = 0;
const DRIVER_CPU = 1;

/** The value at vpn as a load would see it now (no thread running): the zero page when unmapped. */
function valueAt(system: System, root: number, vpn: number): number {
  const k = system.kernel;
  const pte = k.pt.read(root, vpn);
  if (ptePresent(pte) || isDevicePrivateEntry(pte)) return k.store.word(pteFrame(pte));
  return 0;
}

function build(config: ExploreConfig, keep: readonly boolean[]): ScenarioSetup {
  const system = new System(
    systemOptionsFor(config, {
      ram: "1MiB",
      store: "tokens",
      cpus: 2,
      devices: [{ memory: "64KiB" }],
    }),
  );
  const proc = system.spawn();
  const addr = proc.mmap(PAGE_SIZE);
  const vpn = addr / PAGE_SIZE;
  // Written from CPU 0: its TLB now caches the page writable and dirty.
  proc.fillPages(addr, 1, 0);
  const k = system.kernel;
  k.store.fill(pteFrame(k.pt.read(proc.mm.root, vpn)), BEFORE);
  const fd = system.device(0).open(proc);
  const threads: ScenarioThread[] = [];
  if (keep[0] !== false) threads.push({ op: 0, cpu: DRIVER_CPU, body: fd.mirror.cmdMigrateToDevice(vpn, 1) });
  let loaded: number | null = null;
  if (keep[1] !== false) {
    const body = (function* (): Kfn<number> {
      yield* sysMadvise(k, proc.mm, addr, PAGE_SIZE, MADV_DONTNEED);
      const pfn = yield* proc.accessPage(vpn, true);
      if (pfn >= 0) k.store.fill(pfn, STORED);
      const again = yield* proc.accessPage(vpn, false);
      loaded = again >= 0 ? k.store.word(again) : -1;
      return loaded;
    })();
    threads.push({ op: 1, cpu: PROCESS_CPU, body, observe: (result) => `load ${String(result)}` });
  }
  const storing = keep[1] !== false;
  return {
    system,
    threads,
    observeFinal: () =>
      `vpn 0x${vpn.toString(16)} holds 0x${valueAt(system, proc.mm.root, vpn).toString(16)}`,
    check: () => {
      if (!storing) return [];
      const lines: string[] = [];
      const final = valueAt(system, proc.mm.root, vpn);
      if (loaded !== STORED)
        lines.push(
          `lost write: the load after the store read 0x${(loaded ?? -1).toString(16)}, not 0x${STORED.toString(16)}`,
        );
      if (final !== STORED)
        lines.push(
          `lost write: the store after MADV_DONTNEED returned went to the old page; vpn 0x${vpn.toString(16)} holds 0x${final.toString(16)}, not 0x${STORED.toString(16)}`,
        );
      return lines;
    },
    watch: [{ process: proc.pid, vpn }],
  };
}

export const s12Scenario: Scenario = {
  name: "s12-collect-flush",
  description:
    "migrate_vma collect flushes the TLB after dropping the PTE lock (4.14-5.19): a MADV_DONTNEED in " +
    "the window returns while another CPU's TLB still writes to the page, and the write is lost",
  // The corrected dmirror: test_hmm.c's own window (d), a zap during its migration leaving the mirror
  // a freed device page, would otherwise show in the same schedules (see DmirrorSwitches).
  config: { protocol: "modern", switches: { "dmirror.invalidateOnOwnMigration": true } },
  defect: {
    id: "S12",
    switches: { "migrate.collectFlushUnderPtl": false },
    kind: "data",
  },
  operations: [
    { name: "device 0 MIGRATE_TO_DEV vpn 0 (CPU 1)" },
    { name: "madvise(MADV_DONTNEED), store, load (CPU 0)" },
  ],
  build,
};
