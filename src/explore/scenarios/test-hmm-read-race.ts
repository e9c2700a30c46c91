/**
 * test_hmm-read-race, window (c) of DmirrorSwitches: a READ through the open that is migrating the
 * page. When the READ's hmm_range_fault ran before collect, the migration's skipped invalidation never
 * moves the notifier sequence, so mmu_interval_read_retry passes and dmirror_do_fault mirrors the
 * page being migrated away; if that happens after finalize_and_map mirrored the destination, the
 * mirror is left naming the freed source frame. The catalogue's "fixed" kernel is the corrected driver.
 */
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { deviceRead, smallSystem, vpnOf } from "./common.js";

export const testHmmReadRaceScenario: Scenario = {
  name: "test_hmm-read-race",
  description:
    "modern: device 0 READs a page through the open that is migrating it to the device; a READ whose " +
    "hmm_range_fault ran before collect mirrors the page being migrated away",
  config: { protocol: "modern", switches: { "dmirror.invalidateOnOwnMigration": true } },
  defect: {
    id: "test_hmm-read-race",
    switches: { "dmirror.invalidateOnOwnMigration": false },
    kind: "invariant",
  },
  operations: [{ name: "device 0 READ" }, { name: "device 0 MIGRATE_TO_DEV" }],
  build(config, keep) {
    const system = smallSystem(config);
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(system.pageSize);
    proc.fillPages(addr, 1, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 1, body: deviceRead(fd, vpn, 1), observe: String });
    if (keep[1]) threads.push({ op: 1, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, 1) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 1),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};
