/**
 * S2 (KERNEL-NOTES section 9): the seed's collect changes PTEs with no mmu notifier around it, so a
 * device that mirrors the range never hears that its page is migrating away. Device 1 mirrors a page
 * (READ) while device 0 migrates it to its memory: when the READ's hmm_range_fault ran first, device
 * 1 keeps mapping the source frame after the migration freed it, and its next access reads or writes
 * whatever gets that frame. The invariant checker names the stale mirror entry. 4.14 brackets collect
 * with MMU_NOTIFY_CLEAR (`migrate.collectNotifier` "clear"), which erases every mirror's entries.
 */
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { deviceRead, smallSystem, vpnOf } from "./common.js";

export const s2Scenario: Scenario = {
  name: "s2",
  description:
    "4.14: device 1 mirrors a page (READ) while device 0 migrates it to its memory; without the " +
    "invalidation around collect device 1 keeps mirroring the freed source frame",
  config: { protocol: "4.14", switches: { "migrate.collectNotifier": "clear" } },
  defect: { id: "S2", switches: { "migrate.collectNotifier": "none" }, kind: "invariant" },
  operations: [{ name: "device 1 READ" }, { name: "device 0 MIGRATE_TO_DEV" }],
  build(config, keep) {
    const system = smallSystem(config, 2);
    const proc = system.spawn();
    const mirror = system.device(1).open(proc);
    const migrator = system.device(0).open(proc);
    const addr = proc.mmap(system.pageSize);
    proc.fillPages(addr, 1, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 1, body: deviceRead(mirror, vpn, 1), observe: String });
    if (keep[1]) threads.push({ op: 1, cpu: 0, body: migrator.mirror.cmdMigrateToDevice(vpn, 1) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 1),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};
