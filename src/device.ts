/**
 * Device handles for the friendly surface: a Device (one dmirror device and its memory), an OpenFile
 * (struct file: one open of the device), and a DeviceFile (one file descriptor of one process on an
 * OpenFile), whose methods are the dmirror ioctls. A command that fails throws KernelError with the
 * errno the ioctl returns; on success it returns what the kernel copies back (cpages, faults, and the
 * data or snapshot codes).
 *
 * Lifetime, as in Linux:
 * - `Device.open(process)` opens the device in that process (dmirror_fops_open: the file mirrors that
 *   process's mm for the whole life of the file) and gives it the lowest free descriptor from 3 up;
 * - `Process.fork()` copies the descriptor table (dup_fd): the child's `files` holds a DeviceFile of its
 *   own, with the same fd number, for every one the parent had open. Each names the same OpenFile, so
 *   commands through the child's descriptor work on the parent's mirror and the parent's mm;
 * - `close()` drops one descriptor; the last one to go releases the file (dmirror_fops_release). A
 *   second `close()` of the same DeviceFile, and any command on it, give EBADF before anything else;
 * - `Process.exit()` tears down the mm first (exit_mm), then closes every descriptor (exit_files), so a
 *   release at exit runs with the mm already gone; a descriptor that another process inherited keeps
 *   the file open, and its commands then fail as dmirror fails them on a dead mm (see each method).
 *
 * Arguments: addr and npages are the ioctl's u64 fields, given as numbers; anything that is not a
 * number holding an integer in [0, 2^64) gets EINVAL, as out-of-range values do (drivers/dmirror.ts,
 * commandRange). Buffers (cmd->ptr) are Uint8Arrays: null stands for a NULL pointer, and null, a value
 * of another type, or one too short for the pages gets EFAULT, as copy_from_user/copy_to_user fail on
 * a bad user buffer; an omitted buffer means hmmsim provides one and returns it. Every check is made
 * before the command's thread starts, so a call refused this way changes nothing (where the kernel
 * would fail the copy only after doing the work, hmmsim refuses up front: see each method).
 */
import { EBADF, EFAULT, EINVAL, ENOMEM, ESRCH, KernelError } from "./base/errno.js";
import { PAGE_SIZE } from "./base/units.js";
import {
  bounceFits,
  type CommandRange,
  commandRange,
  Dmirror,
  type DmirrorDevice,
  type DmirrorResult,
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
} from "./drivers/dmirror.js";
import { NoBytesError } from "./mm/page_store.js";
import type { Process } from "./process.js";
import type { Kfn } from "./sched/thread.js";
import type { System } from "./system.js";

export interface ReadResult extends DmirrorResult {
  /** The bytes read (bytes store): the caller's buffer when it gave one; null in the tokens store. */
  data: Uint8Array | null;
  /** Each page's first 32-bit word (bytes store) or version (tokens store). */
  words: Uint32Array;
}

export interface MigrateResult extends DmirrorResult {
  /** The read-back of the migrated range in the caller's buffer, or null when it gave none. */
  data: Uint8Array | null;
}

/** The first descriptor a device file gets: 0, 1 and 2 are a process's standard streams. */
const FIRST_FD = 3;

/** One dmirror device of a System and its memory; `open` gives a process a DeviceFile on it. */
export class Device {
  constructor(
    readonly system: System,
    readonly driver: DmirrorDevice,
  ) {}

  /** The device's minor number: N of /dev/hmm_dmirrorN. */
  get minor(): number {
    return this.driver.minor;
  }

  /** The device's memory: "private" (MEMORY_DEVICE_PRIVATE) or "coherent" (MEMORY_DEVICE_COHERENT). */
  get type(): "private" | "coherent" {
    return this.driver.isPrivate ? "private" : "coherent";
  }

  /** Device pages in use. */
  get usedPages(): number {
    return this.driver.usedPages;
  }

  /**
   * open("/dev/hmm_dmirrorN") by `process` (dmirror_fops_open): the file mirrors that process's address
   * space. ESRCH for a process that has exited; EINVAL for anything that is not a process of this system.
   */
  open(process: Process): DeviceFile {
    const candidate = process as Partial<Process> | null | undefined;
    if (
      typeof candidate !== "object" ||
      candidate === null ||
      candidate.system !== this.system ||
      !(candidate.fdTable instanceof FileTable)
    )
      throw new KernelError(EINVAL, "open: not a process of this system");
    if (process.exited) throw new KernelError(ESRCH, `open: process ${process.pid} has exited`);
    const file = new OpenFile(this.system, new Dmirror(this.driver, process.mm));
    return process.fdTable.install(file);
  }
}

/**
 * struct file for an open dmirror device: the open's mirror (filp->private_data) and the count of
 * descriptors that name it (f_count). The last put releases it.
 */
export class OpenFile {
  private refs = 0;

  constructor(
    readonly system: System,
    readonly mirror: Dmirror,
  ) {}

  get references(): number {
    return this.refs;
  }

  get(): void {
    this.refs++;
  }

  /** fput: at the last reference, dmirror_fops_release runs, in the thread of the process that closed. */
  *put(): Kfn<void> {
    if (--this.refs > 0) return;
    yield* this.mirror.release();
  }
}

/** A process's descriptor table (files_struct), of device files only. */
export class FileTable {
  private readonly byFd: (DeviceFile | undefined)[] = [];

  constructor(private readonly process: Process) {}

  /** The open descriptors, lowest fd first. */
  get files(): DeviceFile[] {
    return this.byFd.filter((file): file is DeviceFile => file !== undefined);
  }

  /** fd_install at the lowest free descriptor (alloc_fd). */
  install(file: OpenFile, fd?: number): DeviceFile {
    let at = fd ?? FIRST_FD;
    // Bounded by the table's length: some slot past the end is free.
    while (fd === undefined && this.byFd[at] !== undefined) at++;
    file.get();
    const handle = new DeviceFile(this.process, at, file, this);
    this.byFd[at] = handle;
    return handle;
  }

  /** dup_fd: the child's table names the parent's open files at the same descriptors. */
  copyFrom(parent: FileTable): void {
    for (const handle of parent.files) this.install(handle.file, handle.fd);
  }

  forget(handle: DeviceFile): void {
    if (this.byFd[handle.fd] === handle) this.byFd[handle.fd] = undefined;
  }

  /** exit_files: closes every descriptor still open, lowest first, in the exiting thread. */
  *closeAll(): Kfn<void> {
    for (const handle of this.files) yield* handle.closeFd();
  }
}

/** One file descriptor of one process on an open dmirror device; its methods are the dmirror ioctls. */
export class DeviceFile {
  private isOpen = true;

  constructor(
    readonly process: Process,
    /** The descriptor number in its process. */
    readonly fd: number,
    readonly file: OpenFile,
    private readonly table: FileTable,
  ) {}

  private get system(): System {
    return this.file.system;
  }

  /** The open's mirror (shared by every descriptor of the file). */
  get mirror(): Dmirror {
    return this.file.mirror;
  }

  /** This descriptor was closed (by close() or by its process's exit). */
  get closed(): boolean {
    return !this.isOpen;
  }

  /** fdget: EBADF on a closed descriptor, before anything else is looked at. */
  private checkOpen(what: string): void {
    if (!this.isOpen) throw new KernelError(EBADF, `${what}: fd ${this.fd} is not open`);
  }

  /** The ioctl's own checks on cmd.addr and cmd.npages (EBADF first, then EINVAL). */
  private begin(what: string, addr: unknown, npages: unknown): CommandRange {
    this.checkOpen(what);
    const range = commandRange(addr, npages);
    if (range === null) throw new KernelError(EINVAL, `${what}: bad addr or npages`);
    return range;
  }

  private run<T>(name: string, body: Kfn<T | number>): T {
    // A command test_hmm.c never returns from comes out as its LivelockError (sched.call unwraps it).
    const ret = this.system.kernel.sched.call(
      `dmirror ${this.mirror.device.minor} ${name}`,
      body,
      this.process.cpu,
    );
    if (typeof ret === "number") throw new KernelError(-ret, name);
    return ret;
  }

  private requireBytes(what: string): void {
    if (this.system.kernel.store.kind !== "bytes")
      throw new NoBytesError(`${what}: the tokens store keeps one version per page, not bytes`);
  }

  /**
   * HMM_DMIRROR_READ (dmirror_read): npages through the mirror, faulting missing pages in. `into`
   * (cmd->ptr) receives the pages only when the command succeeds, as the kernel copies its bounce buffer
   * out only then; without it hmmsim returns a buffer of its own (bytes store) or none (tokens store).
   * ENOMEM when the bounce buffer would exceed RAM; EFAULT for a bad `into`, checked up front where the
   * kernel finds it only after the work (faulting the pages in), unless the mm has gone, when the
   * command fails first as dmirror_read does (see DmirrorSwitches.faultFailsWithoutMm).
   */
  read(addr: number, npages: number, into?: Uint8Array | null): ReadResult {
    const range = this.begin("HMM_DMIRROR_READ", addr, npages);
    const k = this.system.kernel;
    if (!bounceFits(k, range.npages)) throw new KernelError(ENOMEM, "HMM_DMIRROR_READ: bounce buffer");
    if (into !== undefined) {
      this.requireBytes("HMM_DMIRROR_READ into a buffer");
      if (this.mirror.mmAlive) checkBuffer(into, range.npages * PAGE_SIZE, "HMM_DMIRROR_READ");
    }
    const bounce = k.store.kind === "bytes" ? new Uint8Array(range.npages * PAGE_SIZE) : null;
    const words = new Uint32Array(range.npages);
    const result = this.run("HMM_DMIRROR_READ", this.mirror.cmdRead(range.vpn, range.npages, bounce, words));
    if (into === undefined) return { ...result, data: bounce, words };
    // copy_to_user, after the work, when the check above could not run first.
    checkBuffer(into, range.npages * PAGE_SIZE, "HMM_DMIRROR_READ");
    if (bounce !== null) into.set(bounce);
    return { ...result, data: into, words };
  }

  /**
   * HMM_DMIRROR_WRITE (dmirror_write): `data` holds npages whole pages (bytes store only). ENOMEM when
   * the bounce buffer would exceed RAM, then EFAULT for a bad buffer (copy_from_user), both before any
   * page is touched, as in the kernel.
   */
  write(addr: number, npages: number, data: Uint8Array): DmirrorResult {
    const range = this.begin("HMM_DMIRROR_WRITE", addr, npages);
    if (!bounceFits(this.system.kernel, range.npages))
      throw new KernelError(ENOMEM, "HMM_DMIRROR_WRITE: bounce buffer");
    this.requireBytes("HMM_DMIRROR_WRITE");
    checkBuffer(data, range.npages * PAGE_SIZE, "HMM_DMIRROR_WRITE");
    return this.run("HMM_DMIRROR_WRITE", this.mirror.cmdWrite(range.vpn, range.npages, data));
  }

  /**
   * HMM_DMIRROR_MIGRATE_TO_DEV (dmirror_migrate_to_device): migrates the range, then reads it back
   * through the mirror into `into` (cmd->ptr) as READ does; `data` is that buffer, or null without one.
   * EINVAL once the mm has gone or at a hole or unreadable VMA; ENOENT when a page of the range is not
   * mirrored afterwards; ENOMEM when the read-back's bounce buffer would exceed RAM, after migrating, as
   * in the kernel. A bad `into` gets EFAULT up front, where the kernel migrates first.
   */
  migrateToDevice(addr: number, npages: number, into?: Uint8Array | null): MigrateResult {
    const range = this.begin("HMM_DMIRROR_MIGRATE_TO_DEV", addr, npages);
    if (into !== undefined) {
      this.requireBytes("HMM_DMIRROR_MIGRATE_TO_DEV into a buffer");
      if (this.mirror.mmAlive) checkBuffer(into, range.npages * PAGE_SIZE, "HMM_DMIRROR_MIGRATE_TO_DEV");
    }
    // With the mm gone the command fails before it would look at the buffer.
    const buffer = this.mirror.mmAlive ? (into ?? null) : null;
    const result = this.run(
      "HMM_DMIRROR_MIGRATE_TO_DEV",
      this.mirror.cmdMigrateToDevice(range.vpn, range.npages, buffer),
    );
    return { ...result, data: into ?? null };
  }

  /** HMM_DMIRROR_MIGRATE_TO_SYS (dmirror_migrate_to_system): EINVAL once the mm has gone. */
  migrateToSystem(addr: number, npages: number): DmirrorResult {
    const range = this.begin("HMM_DMIRROR_MIGRATE_TO_SYS", addr, npages);
    return this.run("HMM_DMIRROR_MIGRATE_TO_SYS", this.mirror.cmdMigrateToSystem(range.vpn, range.npages));
  }

  /**
   * HMM_DMIRROR_EXCLUSIVE (dmirror_exclusive): each page of the range faulted in writable and replaced
   * in the CPU page table by a device-exclusive entry (make_device_exclusive), mapped by the device for
   * atomic access; then read back through the mirror into `into` as READ does. The next CPU access to
   * a page revokes it. EINVAL once the mm has gone, and under "seed" and "4.14" (no such command);
   * EFAULT for an address the process cannot write; EOPNOTSUPP for a page that is not anonymous.
   */
  exclusive(addr: number, npages: number, into?: Uint8Array | null): MigrateResult {
    const range = this.begin("HMM_DMIRROR_EXCLUSIVE", addr, npages);
    if (into !== undefined) {
      this.requireBytes("HMM_DMIRROR_EXCLUSIVE into a buffer");
      if (this.mirror.mmAlive) checkBuffer(into, range.npages * PAGE_SIZE, "HMM_DMIRROR_EXCLUSIVE");
    }
    const buffer = this.mirror.mmAlive ? (into ?? null) : null;
    const result = this.run(
      "HMM_DMIRROR_EXCLUSIVE",
      this.mirror.cmdExclusive(range.vpn, range.npages, buffer),
    );
    return { ...result, data: into ?? null };
  }

  /**
   * HMM_DMIRROR_CHECK_EXCLUSIVE (dmirror_check_atomic): EPERM while the device still maps a page of the
   * range for atomic access; returns once every such mapping has been revoked. EINVAL under "seed" and
   * "4.14" (no such command).
   */
  checkExclusive(addr: number, npages: number): void {
    const range = this.begin("HMM_DMIRROR_CHECK_EXCLUSIVE", addr, npages);
    const ret = this.mirror.cmdCheckExclusive(range.vpn, range.npages);
    if (typeof ret === "number") throw new KernelError(-ret, "HMM_DMIRROR_CHECK_EXCLUSIVE");
  }

  /**
   * HMM_DMIRROR_SNAPSHOT (dmirror_snapshot): one HMM_DMIRROR_PROT_* code per page, in `into` (cmd->ptr)
   * or in a buffer hmmsim provides. EINVAL once the mm has gone. SNAPSHOT has no bounce buffer: it
   * copies 32 codes at a time to the caller's buffer, so its only limit is that buffer, and a bad or
   * short one gets EFAULT (up front, where the kernel would have copied the chunks that fit). hmmsim
   * provides a buffer of up to RAM's size in bytes; a larger one could not be written in memory, and a
   * caller that tried would get EFAULT from the copy, which hmmsim gives at once.
   */
  snapshot(addr: number, npages: number, into?: Uint8Array | null): Uint8Array {
    const range = this.begin("HMM_DMIRROR_SNAPSHOT", addr, npages);
    const k = this.system.kernel;
    let codes: Uint8Array;
    if (into !== undefined) {
      if (this.mirror.mmAlive) checkBuffer(into, range.npages, "HMM_DMIRROR_SNAPSHOT");
      codes = into ?? new Uint8Array(0);
    } else {
      if (range.npages > k.ram.ramPages * PAGE_SIZE)
        throw new KernelError(EFAULT, "HMM_DMIRROR_SNAPSHOT: no buffer can hold the codes");
      codes = new Uint8Array(range.npages);
    }
    this.run("HMM_DMIRROR_SNAPSHOT", this.mirror.cmdSnapshot(range.vpn, range.npages, codes));
    return codes;
  }

  /**
   * HMM_DMIRROR_FLAGS: dmirror->flags = cmd.npages, the u64 itself (the ioctl's checks still apply to
   * it as a page count, so 0 is EINVAL). Only HMM_DMIRROR_FLAG_FAIL_ALLOC (bit 0) means anything.
   */
  setFlags(addr: number, flags: number = HMM_DMIRROR_FLAG_FAIL_ALLOC): void {
    this.begin("HMM_DMIRROR_FLAGS", addr, flags);
    this.mirror.flags = flags;
  }

  /**
   * HMM_DMIRROR_RELEASE (dmirror_device_remove_chunks): evicts every chunk of the device to RAM and
   * gives its memory back; later migrations add new chunks. The ioctl checks cmd.addr and cmd.npages
   * for this command too, though it uses neither (hmm-tests passes its buffer's); the defaults pass.
   * EINVAL under "seed" and "4.14", whose test_hmm.c had no such command.
   */
  release(addr = 0, npages = 1): void {
    this.begin("HMM_DMIRROR_RELEASE", addr, npages);
    this.run("HMM_DMIRROR_RELEASE", this.mirror.cmdRelease());
  }

  /** close(2): EBADF when this descriptor is already closed; the last descriptor releases the file. */
  close(): void {
    this.checkOpen("close");
    this.system.kernel.sched.call(
      `dmirror ${this.mirror.device.minor} close`,
      this.closeFd(),
      this.process.cpu,
    );
  }

  /** close_fd: the descriptor goes at once; the file's last reference runs its release. */
  *closeFd(): Kfn<void> {
    this.isOpen = false;
    this.table.forget(this);
    yield* this.file.put();
  }
}

/** copy_from_user/copy_to_user on a buffer of at least `bytes` bytes: EFAULT when it is not one. */
function checkBuffer(buffer: unknown, bytes: number, what: string): asserts buffer is Uint8Array {
  if (!(buffer instanceof Uint8Array) || buffer.length < bytes)
    throw new KernelError(EFAULT, `${what}: the buffer is not ${bytes} bytes of memory`);
}
