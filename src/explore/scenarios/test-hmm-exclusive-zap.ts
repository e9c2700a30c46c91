/**
 * test_hmm-exclusive-zap: HMM_DMIRROR_EXCLUSIVE racing MADV_DONTNEED of the same page. Both hold
 * mmap_lock for read. When the zap comes between make_device_exclusive and dmirror_atomic_map, its
 * invalidation finds no mirror entry to erase, the atomic entry is stored after it, and the mirror is
 * left naming a page the CPU no longer maps, freed as soon as dmirror_exclusive puts it: a later device
 * access would use it after free. The catalogue's "fixed" kernel is the corrected driver
 * (DmirrorSwitches.exclusiveRechecks: the mmu_interval_read_begin/read_retry pattern nouveau uses).
 */
import { PAGE_SIZE } from "../../base/units.js";
import { sysMadvise } from "../../mm/madvise.js";
import { MADV_DONTNEED } from "../../mm/mman.js";
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { smallSystem, vpnOf } from "./common.js";

export const testHmmExclusiveZapScenario: Scenario = {
  name: "test_hmm-exclusive-zap",
  description:
    "modern: device 0 takes a page for exclusive (atomic) access while the process MADV_DONTNEEDs it; " +
    "an atomic mirror entry stored after the zap outlives the page",
  config: { protocol: "modern", switches: { "dmirror.exclusiveRechecks": true } },
  defect: {
    id: "test_hmm-exclusive-zap",
    switches: { "dmirror.exclusiveRechecks": false },
    kind: "invariant",
  },
  operations: [{ name: "device 0 EXCLUSIVE" }, { name: "MADV_DONTNEED" }],
  build(config, keep) {
    const system = smallSystem(config);
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(PAGE_SIZE);
    proc.fillPages(addr, 1, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    // The command's read-back runs after mmap_read_unlock, in every driver, so a zap may empty it
    // (-ENOENT): what it returns says nothing about the defect, and is not observed.
    if (keep[0]) threads.push({ op: 0, cpu: 1, body: fd.mirror.cmdExclusive(vpn, 1) });
    if (keep[1])
      threads.push({
        op: 1,
        cpu: 0,
        body: sysMadvise(system.kernel, proc.mm, addr, PAGE_SIZE, MADV_DONTNEED),
      });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 1),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};
