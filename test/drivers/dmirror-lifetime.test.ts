/**
 * Device files and process lifetime (src/device.ts): descriptors inherited across fork (dup_fd),
 * closed at exit after the mm is gone (do_exit: exit_mm before exit_files), released at the last close
 * (fput → dmirror_fops_release), EBADF on a closed descriptor, and what each command does on a file
 * whose mm has gone (lib/test_hmm.c's mmget_not_zero checks, and dmirror_fault's missing one).
 */
import { describe, expect, it } from "vitest";
import { EBADF, EINVAL, ESRCH, KernelError } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  DmirrorLivelockError,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_READ,
} from "../../src/drivers/dmirror.js";
import { isDevicePrivateEntry, ptePresent } from "../../src/mm/pgtable.js";
import { pageValue } from "../../src/process.js";
import { System } from "../../src/system.js";

const P = PAGE_SIZE;

function build(dmirror: { faultFailsWithoutMm?: boolean } = {}) {
  const system = new System({ ram: "8MiB", devices: [{ memory: "1MiB" }, { memory: "1MiB" }], dmirror });
  const proc = system.spawn();
  const addr = proc.mmap(4 * P);
  proc.fillPages(addr, 4, 1);
  return { system, proc, addr };
}

function errnoOf(body: () => unknown): number {
  try {
    body();
  } catch (error) {
    if (error instanceof KernelError) return error.errno;
    throw error;
  }
  expect.fail("expected a KernelError");
}

const pteAt = (system: System, mm: { root: number }, addr: number) =>
  system.kernel.pt.read(mm.root, addr / P);

describe("close", () => {
  // close_fd (fs/file.c): a descriptor that is not open gives -EBADF.
  it("a second close() gives EBADF", () => {
    const { system, proc } = build();
    const fd = system.device(0).open(proc);
    fd.close();
    expect(errnoOf(() => fd.close())).toBe(EBADF);
    expect(fd.closed).toBe(true);
    expect(proc.files).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  // fdget fails before dmirror_fops_unlocked_ioctl runs: EBADF whatever the arguments.
  it("every command on a closed descriptor gives EBADF before its arguments are looked at", () => {
    const { system, proc, addr } = build();
    const fd = system.device(0).open(proc);
    fd.close();
    const bad = 1; // unaligned, and 0 pages: EINVAL on an open file
    expect(errnoOf(() => fd.read(bad, 0))).toBe(EBADF);
    expect(errnoOf(() => fd.write(bad, 0, "x" as unknown as Uint8Array))).toBe(EBADF);
    expect(errnoOf(() => fd.migrateToDevice(bad, 0))).toBe(EBADF);
    expect(errnoOf(() => fd.migrateToSystem(bad, 0))).toBe(EBADF);
    expect(errnoOf(() => fd.snapshot(bad, 0))).toBe(EBADF);
    expect(errnoOf(() => fd.setFlags(bad, 0))).toBe(EBADF);
    expect(errnoOf(() => fd.release(bad, 0))).toBe(EBADF);
    expect(errnoOf(() => fd.read(addr, 4))).toBe(EBADF);
  });

  it("descriptors are numbered from 3, lowest free first", () => {
    const { system, proc } = build();
    const a = system.device(0).open(proc);
    const b = system.device(1).open(proc);
    expect([a.fd, b.fd]).toEqual([3, 4]);
    a.close();
    expect(system.device(0).open(proc).fd).toBe(3);
    expect(proc.files.map((file) => file.fd)).toEqual([3, 4]);
  });
});

describe("fork", () => {
  // dup_fd: the child's table names the same struct file at the same descriptors; the file mirrors the
  // mm of the process that opened it (dmirror_fops_open takes current->mm), so the child's commands
  // work on the parent's address space.
  it("the child inherits the parent's device files: same fd, same open file, the parent's mm", () => {
    const { system, proc, addr } = build();
    const fd = system.device(0).open(proc);
    const child = proc.fork();
    expect(child.files).toHaveLength(1);
    const inherited = child.files[0]!;
    expect(inherited.fd).toBe(fd.fd);
    expect(inherited.file).toBe(fd.file);
    expect(inherited.process).toBe(child);
    proc.fillPages(addr, 4, 2); // the parent's copy changes (COW): the child's stays at seed 1
    expect([...inherited.read(addr, 4).words]).toEqual([0, 1, 2, 3].map((i) => pageValue(2, i)));
    expect(child.checkPages(addr, 4, 1)).toEqual([]);
    // Migrating through the child's descriptor moves the parent's pages.
    expect(inherited.migrateToDevice(addr, 4).cpages).toBe(4);
    expect(isDevicePrivateEntry(pteAt(system, proc.mm, addr))).toBe(true);
    expect(ptePresent(pteAt(system, child.mm, addr))).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  // fput: dmirror_fops_release runs at the last reference, not at every close.
  it("the file is released at the last close, whichever process closes it", () => {
    const { system, proc, addr } = build();
    const fd = system.device(0).open(proc);
    const child = proc.fork();
    expect(fd.migrateToDevice(addr, 4).cpages).toBe(4);
    child.files[0]!.close();
    expect(fd.file.references).toBe(1);
    expect(fd.mirror.closed).toBe(false);
    expect(system.device(0).usedPages).toBe(4);
    expect(fd.read(addr, 4).faults).toBe(0);
    fd.close();
    // Release evicted the device's memory (modern dmirror_fops_release).
    expect(fd.mirror.closed).toBe(true);
    expect(system.device(0).usedPages).toBe(0);
    expect(ptePresent(pteAt(system, proc.mm, addr))).toBe(true);
    expect(proc.checkPages(addr, 4, 1)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("exit", () => {
  // do_exit: exit_files closes every descriptor; the last close runs dmirror_fops_release, which evicts
  // every chunk of the device (dmirror_device_evict_chunk), another process's pages included.
  it("closes the process's device files, and their release evicts the device's memory", () => {
    const { system, proc, addr } = build();
    const owner = system.device(0).open(proc);
    expect(owner.migrateToDevice(addr, 4).cpages).toBe(4);
    const other = system.spawn();
    const fd = system.device(0).open(other);
    other.exit();
    expect(fd.closed).toBe(true);
    expect(errnoOf(() => fd.read(addr, 1))).toBe(EBADF);
    expect(fd.mirror.closed).toBe(true);
    expect(system.device(0).usedPages).toBe(0);
    expect(ptePresent(pteAt(system, proc.mm, addr))).toBe(true);
    expect(proc.checkPages(addr, 4, 1)).toEqual([]);
    expect(owner.read(addr, 4).faults).toBe(1);
    expect(system.checkInvariants()).toEqual([]);
  });

  // exit_mm runs before exit_files: by the time the release evicts, the exiting process's own device
  // pages were already freed with its page tables, so nothing of its own is copied back to RAM.
  it("releases the files after the mm is gone: the process's own device pages are freed, not evicted", () => {
    const { system, proc, addr } = build();
    const fd = system.device(0).open(proc);
    expect(fd.migrateToDevice(addr, 4).cpages).toBe(4);
    const copier = system.device(0).driver.copier;
    const copiedBefore = copier.pagesMoved;
    proc.exit();
    expect(copier.pagesMoved).toBe(copiedBefore);
    expect(system.device(0).usedPages).toBe(0);
    expect(system.usedPages).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("open by a process that has exited gives ESRCH; by something else EINVAL", () => {
    const { system, proc } = build();
    proc.exit();
    expect(errnoOf(() => system.device(0).open(proc))).toBe(ESRCH);
    expect(errnoOf(() => system.device(0).open({} as never))).toBe(EINVAL);
    expect(errnoOf(() => system.device(0).open(null as never))).toBe(EINVAL);
    expect(errnoOf(() => system.device(0).open(new System({ ram: "4MiB" }).spawn()))).toBe(EINVAL);
  });
});

describe("a file whose mm has gone (the opener exited, a forked child still holds the file)", () => {
  function orphan(dmirror: { faultFailsWithoutMm?: boolean } = {}) {
    const { system, proc, addr } = build(dmirror);
    const fd = system.device(0).open(proc);
    expect(fd.read(addr, 4).faults).toBe(1);
    const child = proc.fork();
    const inherited = child.files[0]!;
    proc.exit();
    expect(inherited.mirror.mmAlive).toBe(false);
    expect(inherited.mirror.pt.size).toBe(0);
    return { system, child, inherited, addr };
  }

  // dmirror_migrate_to_device, dmirror_migrate_to_system, dmirror_snapshot: mmget_not_zero fails,
  // return -EINVAL.
  it("MIGRATE_TO_DEV, MIGRATE_TO_SYS and SNAPSHOT give EINVAL (mmget_not_zero)", () => {
    const { system, child, inherited, addr } = orphan();
    expect(errnoOf(() => inherited.migrateToDevice(addr, 4))).toBe(EINVAL);
    expect(errnoOf(() => inherited.migrateToDevice(addr, 4, new Uint8Array(4 * P)))).toBe(EINVAL);
    expect(errnoOf(() => inherited.migrateToSystem(addr, 4))).toBe(EINVAL);
    expect(errnoOf(() => inherited.snapshot(addr, 4))).toBe(EINVAL);
    expect(errnoOf(() => inherited.snapshot(addr, 4, null))).toBe(EINVAL);
    expect(child.checkPages(addr, 4, 1)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  // dmirror_fault returns 0 when mmget_not_zero fails, so dmirror_read/dmirror_write go round their
  // loop for ever (every mirror entry was erased when the mm went): a test_hmm.c defect.
  it("READ and WRITE never return in test_hmm.c: hmmsim stops them with DmirrorLivelockError, holding nothing", () => {
    const { system, child, inherited, addr } = orphan();
    expect(() => inherited.read(addr, 4)).toThrow(DmirrorLivelockError);
    expect(() => inherited.write(addr, 4, new Uint8Array(4 * P))).toThrow(
      /HMM_DMIRROR_WRITE on dmirror 0 never returns/,
    );
    expect(inherited.mirror.mutex.locked).toBe(false);
    // The file still closes, and its release (the last reference) runs with the mm gone.
    child.exit();
    expect(inherited.mirror.closed).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("READ and WRITE give EINVAL with faultFailsWithoutMm", () => {
    const { system, child, inherited, addr } = orphan({ faultFailsWithoutMm: true });
    const into = new Uint8Array(4 * P).fill(5);
    expect(errnoOf(() => inherited.read(addr, 4, into))).toBe(EINVAL);
    expect(into.every((byte) => byte === 5)).toBe(true);
    expect(errnoOf(() => inherited.write(addr, 4, new Uint8Array(4 * P)))).toBe(EINVAL);
    expect(child.checkPages(addr, 4, 1)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("the child's own memory is untouched and its own files work", () => {
    const { system, child, addr } = orphan();
    const own = system.device(0).open(child);
    expect(own.migrateToDevice(addr, 4).cpages).toBe(4);
    // Still write-protected from the fork: the pages migrate read-only.
    expect([...own.snapshot(addr, 4)]).toEqual(
      Array(4).fill(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_READ),
    );
    expect(child.checkPages(addr, 4, 1)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});
