/**
 * Migrating to the device a page already on it, under "4.14": migrate_vma_collect_pmd selects the
 * device-private entry and unmaps it with make_migration_entry(page, pte_write(pte)), pte_write() of a
 * swap PTE, so the entry, and the device-private entry remove_migration_pte restores from it, is
 * read-only whatever it was (fixed in 4.17 by "mm/migrate: properly preserve write attribute in special
 * migrate entry", the writeFromMpfn switch). dmirror maps such a page again in its finalize_and_map
 * (the owner-less MMU_NOTIFY_CLEAR erased its entry); its mirror entry must not be writable where the
 * CPU's is not. Found by the surface property test.
 */
import { describe, expect, it } from "vitest";
import {
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
} from "../../src/drivers/dmirror.js";
import { isWritableDevicePrivateEntry } from "../../src/mm/pgtable.js";
import { System } from "../../src/system.js";

function migratedTwice(writeFromMpfn?: boolean) {
  const system = new System({
    ram: "8MiB",
    protocol: "4.14",
    devices: [{ memory: "2MiB" }],
    ...(writeFromMpfn === undefined ? {} : { migrateSwitches: { writeFromMpfn } }),
  });
  const proc = system.spawn();
  const addr = proc.mmap(4096);
  proc.fillPages(addr, 1, 7);
  const fd = system.device(0).open(proc);
  expect(fd.migrateToDevice(addr, 1).cpages).toBe(1);
  expect(isWritableDevicePrivateEntry(system.kernel.pt.read(proc.mm.root, addr / 4096))).toBe(true);
  expect(fd.migrateToDevice(addr, 1).cpages).toBe(1);
  return { system, proc, addr, fd };
}

describe("a page migrated again to the device it is on (4.14)", () => {
  it("comes back read-only, as pte_write() of its swap PTE made it, and the mirror maps it read-only too", () => {
    const { system, proc, addr, fd } = migratedTwice();
    expect(isWritableDevicePrivateEntry(system.kernel.pt.read(proc.mm.root, addr / 4096))).toBe(false);
    expect(system.checkInvariants()).toEqual([]);
    expect(fd.snapshot(addr, 1)[0]).toBe(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_READ);
    // hmm_range_fault reports a device-private page of the caller's own device without faulting it,
    // even for a write (hmm_vma_handle_pte), so a WRITE through the mirror gets dmirror_do_fault's
    // -EFAULT for the read-only page, as test_hmm.c's does; a CPU store brings the page back.
    const data = new Uint8Array(4096).fill(0x5c);
    expect(() => fd.write(addr, 1, data)).toThrow(expect.objectContaining({ code: "EFAULT" }));
    expect(proc.checkPages(addr, 1, 7)).toEqual([]);
    proc.writeU32(addr, 1);
    expect(fd.write(addr, 1, data).cpages).toBe(1);
    expect(proc.read(addr, 4096)).toEqual(data);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("stays writable in both with the 4.17 fix (writeFromMpfn)", () => {
    const { system, proc, addr, fd } = migratedTwice(true);
    expect(isWritableDevicePrivateEntry(system.kernel.pt.read(proc.mm.root, addr / 4096))).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
    expect(fd.snapshot(addr, 1)[0]).toBe(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE);
    expect(proc.checkPages(addr, 1, 7)).toEqual([]);
  });
});
