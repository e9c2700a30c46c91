/**
 * test_hmm-second-open, window (b) of DmirrorSwitches: dmirror_interval_invalidate skips an
 * MMU_NOTIFY_MIGRATE whose owner is its device in every open of the device, not only the one
 * migrating. A second open of device 0 by the same process that mirrored a page (READ) keeps
 * mirroring the source frame after the first open migrated the page to the device and freed it: its
 * next READ returns whatever gets the frame, its WRITE corrupts it. The invariant checker names the
 * stale entry. The catalogue's "fixed" kernel is the corrected driver.
 */
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { deviceRead, smallSystem, vpnOf } from "./common.js";

export const testHmmSecondOpenScenario: Scenario = {
  name: "test_hmm-second-open",
  description:
    "modern: a second open of device 0 mirrors a page (READ) while the first migrates it to the device; " +
    "test_hmm.c skips the migration's invalidation in every open, so the second keeps the freed source",
  config: { protocol: "modern", switches: { "dmirror.invalidateOnOwnMigration": true } },
  defect: {
    id: "test_hmm-second-open",
    switches: { "dmirror.invalidateOnOwnMigration": false },
    kind: "invariant",
  },
  operations: [{ name: "device 0 open 2 READ" }, { name: "device 0 open 1 MIGRATE_TO_DEV" }],
  build(config, keep) {
    const system = smallSystem(config);
    const proc = system.spawn();
    const migrator = system.device(0).open(proc);
    const second = system.device(0).open(proc);
    const addr = proc.mmap(system.pageSize);
    proc.fillPages(addr, 1, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 1, body: deviceRead(second, vpn, 1), observe: String });
    if (keep[1]) threads.push({ op: 1, cpu: 0, body: migrator.mirror.cmdMigrateToDevice(vpn, 1) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 1),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};
