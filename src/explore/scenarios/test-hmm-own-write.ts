/**
 * test_hmm-own-write, window (a) of DmirrorSwitches (confirmed by test/property/faithful.property.test.ts):
 * lib/test_hmm.c's dmirror_interval_invalidate returns at once for an MMU_NOTIFY_MIGRATE its own
 * device started, without mmu_interval_set_seq, so while an open migrates a page to the device its
 * mirror keeps the source page writable. A WRITE through that open that lands after
 * dmirror_migrate_alloc_and_copy copied the page stores into the source, which the migration then
 * frees: the WRITE returned success and its bytes are gone (no serial order gives the old contents).
 * The catalogue's "fixed" kernel is the corrected driver (`dmirror.invalidateOnOwnMigration`).
 */
import { PAGE_SIZE } from "../../base/units.js";
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { migrated, smallSystem, vpnOf } from "./common.js";

const WRITTEN = 0x5a5a0a0a;

export const testHmmOwnWriteScenario: Scenario = {
  name: "test_hmm-own-write",
  description:
    "modern, bytes store: device 0 WRITEs a page through the open that is migrating it to the device; " +
    "test_hmm.c skips its own migration's invalidation, so the WRITE can land in the source after the copy",
  config: { protocol: "modern", switches: { "dmirror.invalidateOnOwnMigration": true } },
  defect: {
    id: "test_hmm-own-write",
    switches: { "dmirror.invalidateOnOwnMigration": false },
    kind: "data",
  },
  operations: [{ name: "device 0 MIGRATE_TO_DEV" }, { name: "device 0 WRITE" }],
  build(config, keep) {
    const system = smallSystem(config, 1, { store: "bytes" });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(PAGE_SIZE);
    proc.fillPages(addr, 1, 1);
    const vpn = vpnOf(addr);
    const data = new Uint8Array(PAGE_SIZE);
    new Uint32Array(data.buffer).fill(WRITTEN);
    // Mirror the page first, as a program that used the buffer on the device would have.
    fd.read(addr, 1);
    const threads: ScenarioThread[] = [];
    // Migration is best effort: its result is no observation.
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, 1) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: fd.mirror.cmdWrite(vpn, 1, data), observe: migrated });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 1),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};
