/**
 * A user process: its address space, the system calls that change it, and CPU accesses to its memory
 * that fault the way a CPU does (the arch page-fault handler: do_user_addr_fault).
 *
 * Every call runs as a kernel thread on the system's scheduler and returns when it finishes. System
 * calls throw KernelError with the errno the kernel returns; an access the kernel would answer with a
 * signal throws SignalError (SIGSEGV or SIGBUS) and changes nothing it had not already written.
 * Arguments pass through the C ABI of src/base/abi.ts: a value no register can hold is EINVAL, a
 * buffer that is not a Uint8Array is EFAULT. Every call on a process that has exited gives ESRCH,
 * except unpinPages: a pin outlives its process, and unpin_user_pages needs no mm.
 *
 * CPU accesses (read, write, readU32 and the rest) model the process's own loads and stores, not a
 * system call: a zero-length access touches nothing and succeeds wherever it points; an access that
 * reaches a page its VMA does not allow, or that runs out of user space (a negative address is one
 * above 2^63), is SIGSEGV at the first such byte, before any page is touched. Two answers are
 * hmmsim's own: byte accesses on the tokens store give EOPNOTSUPP (NoBytesError), and a read of more
 * than MAX_RW_COUNT (0x7ffff000) bytes, or one whose result the host cannot allocate, gives ENOMEM.
 */
import { isByteBuffer, isRegisterValue, storedInteger, ulongArg } from "./base/abi.js";
import { assert } from "./base/assert.js";
import { checkReturn, EFAULT, EINVAL, ENOMEM, ESRCH, KernelError } from "./base/errno.js";
import { PAGE_SIZE, PAGES_PER_PMD, TASK_SIZE } from "./base/units.js";
import { DeviceFile, FileTable } from "./device.js";
import { MAX_RW_COUNT } from "./mm/filemap.js";
import { dupMm, exitMmap } from "./mm/fork.js";
import { FOLL_LONGTERM, FOLL_PIN, FOLL_WRITE, getUserPages, unpinUserPages } from "./mm/gup.js";
import { sysMadvise } from "./mm/madvise.js";
import {
  FAULT_FLAG_WRITE,
  handleMmFault,
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
} from "./mm/memory.js";
import { AddressSpace, type MmStruct, VM_EXEC, VM_READ, VM_WRITE } from "./mm/mm_types.js";
import {
  type DriverFile,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  sysMmap,
  sysMunmap,
  TASK_VPNS,
} from "./mm/mmap.js";
import { sysMprotect } from "./mm/mprotect.js";
import { sysMremap } from "./mm/mremap.js";
import { pagefaultOutOfMemory, selectBadProcess } from "./mm/oom_kill.js";
import { NoBytesError } from "./mm/page_store.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_RW,
  PageTables,
  pteFrame,
  pteProtNone,
  pteSpecial,
} from "./mm/pgtable.js";
import { pageObject, pmdObject, pteTableObject, tlbObject } from "./sched/objects.js";
import { LivelockError } from "./sched/scheduler.js";
import type { Kfn } from "./sched/thread.js";
import type { System, TmpFile } from "./system.js";

/**
 * A CPU access the kernel answered with a signal. SIGKILL: the OOM killer chose this process while the
 * access faulted; the process is gone (see mm/oom_kill.ts).
 */
export class SignalError extends KernelError {
  constructor(
    readonly signal: "SIGSEGV" | "SIGBUS" | "SIGKILL",
    readonly address: number,
    what: string,
  ) {
    super(EFAULT, `${what} at 0x${address.toString(16)}: ${signal}`);
  }
}

/** What accessPage returns instead of a pfn when the access ends in a signal. */
const ACCESS_SEGV = -1;
const ACCESS_BUS = -2;
const ACCESS_KILLED = -3;

/** The signal an accessPage result below zero stands for. */
function accessSignal(result: number): "SIGSEGV" | "SIGBUS" | "SIGKILL" {
  return result === ACCESS_SEGV ? "SIGSEGV" : result === ACCESS_BUS ? "SIGBUS" : "SIGKILL";
}

/** Retries of one access before hmmsim calls it a livelock (each retry follows a completed fault). */
const ACCESS_RETRIES_MAX = 10_000;
const PRESENT_OK_WRITE = 1 | 2; // _PAGE_PRESENT | _PAGE_RW
/** Scheduling-point labels of a user access (constants, so that an access builds no string). */
const LABEL_LOAD = "user load: TLB lookup, page walk on a miss";
const LABEL_STORE = "user store: TLB lookup, page walk on a miss or a clean entry";
const LABEL_RETRY = "do_user_addr_fault: retry the access after the fault";
const LABEL_MMAP_LOCK = "do_user_addr_fault: mmap_read_lock";
/** An access range's end is capped one byte past user space: enough to fault there. */
const ACCESS_END_MAX = TASK_SIZE + 1;
const TASK_BYTES = BigInt(TASK_SIZE);
/**
 * The most bytes one read hands back: MAX_RW_COUNT, the kernel's cap on one read(2). The result is
 * hmmsim's to allocate; a longer read of accessible memory is ENOMEM, whatever the host could hold.
 */
const READ_BYTES_MAX = MAX_RW_COUNT;

/**
 * The optional arguments of Process.mmap: address hint, prot, flags, the file to map and the offset in it.
 */
export interface MmapOptions {
  addr?: number;
  prot?: number;
  flags?: number;
  /**
   * The file to map (its fd); absent or null for none. A DeviceFile of this process maps the device
   * file itself (dmirror_fops_mmap: zeroed pages, modern only); one of another process, or closed, is
   * a bad fd.
   */
  file?: TmpFile | DeviceFile | null;
  offset?: number;
}

/**
 * A user process of a System: its address space, its system calls, and CPU loads and stores to its memory.
 */
export class Process {
  /** Faults this process took (page faults that reached handle_mm_fault). */
  faults = 0;
  private alive = true;
  /** Exit has begun (the process's own, or the OOM killer's): a fatal signal is pending. */
  private isDying = false;
  /** The descriptor table (files_struct): the device files open in this process. */
  readonly fdTable: FileTable = new FileTable(this);

  constructor(
    readonly system: System,
    readonly pid: number,
    readonly mm: MmStruct,
    /** The CPU its accesses run on. */
    readonly cpu: number,
  ) {}

  private get k() {
    return this.system.kernel;
  }

  private run<T>(name: string, body: Kfn<T>): T {
    this.checkAlive(name);
    return this.k.sched.call(`${name} (pid ${this.pid})`, body, this.cpu);
  }

  /** ESRCH once the process has exited: there is no task left to act for. */
  private checkAlive(what: string): void {
    if (!this.alive) throw new KernelError(ESRCH, `${what}: pid ${this.pid} has exited`);
  }

  /**
   * mmap(2); defaults: PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS (MAP_SHARED with a file), address
   * 0, offset 0. Returns the address. `file` stands for the fd: anything but a TmpFile of this system
   * is a bad fd (EBADF without MAP_ANONYMOUS, ignored with it, as the kernel ignores the fd).
   */
  mmap(length: number, options: MmapOptions = {}): number {
    this.checkAlive("mmap");
    if (typeof options !== "object" || options === null)
      throw new KernelError(EINVAL, "mmap: options must be an object");
    const file = this.fileOf(options.file);
    const defaultFlags =
      options.file === undefined || options.file === null ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED;
    const req = {
      addr: options.addr === undefined ? 0 : options.addr,
      length,
      prot: options.prot === undefined ? PROT_READ | PROT_WRITE : options.prot,
      flags: options.flags === undefined ? defaultFlags : options.flags,
      file,
      offset: options.offset === undefined ? 0 : options.offset,
    };
    return checkReturn(this.run("mmap", sysMmap(this.k, this.mm, req)), "mmap");
  }

  /**
   * The page cache behind a TmpFile of this system, or the driver's file behind an open DeviceFile of
   * this process; null for anything else (a bad fd).
   */
  private fileOf(file: unknown): AddressSpace | DriverFile | null {
    if (file instanceof DeviceFile)
      return file.process === this && !file.closed ? file.mirror.driverFile : null;
    if (typeof file !== "object" || file === null) return null;
    const { system, space } = file as Partial<TmpFile>;
    return system === this.system && space instanceof AddressSpace ? space : null;
  }

  /** munmap(2): unmaps [addr, addr + length); throws KernelError on failure. */
  munmap(addr: number, length: number): void {
    checkReturn(this.run("munmap", sysMunmap(this.k, this.mm, addr, length)), "munmap");
  }

  /**
   * mprotect(2): changes the protection of [addr, addr + length) to `prot`; throws KernelError on failure.
   */
  mprotect(addr: number, length: number, prot: number): void {
    checkReturn(this.run("mprotect", sysMprotect(this.k, this.mm, addr, length, prot)), "mprotect");
  }

  /** mremap(2): MREMAP_MAYMOVE, MREMAP_FIXED and MREMAP_DONTUNMAP (see mm/mremap.ts). Returns the address. */
  mremap(oldAddr: number, oldLength: number, newLength: number, flags = 0, newAddr = 0): number {
    return checkReturn(
      this.run("mremap", sysMremap(this.k, this.mm, oldAddr, oldLength, newLength, flags, newAddr)),
      "mremap",
    );
  }

  /** madvise(2): MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE, MADV_HUGEPAGE, MADV_NOHUGEPAGE. */
  madvise(addr: number, length: number, advice: number): void {
    checkReturn(this.run("madvise", sysMadvise(this.k, this.mm, addr, length, advice)), "madvise");
  }

  /**
   * fork(2): a child with a copy-on-write copy of this address space and a copy of the descriptor
   * table (dup_fd): its `files` name the same open device files as this process's, at the same fds.
   */
  fork(): Process {
    const child = this.run("fork", dupMm(this.k, this.mm));
    if (typeof child === "number") throw new KernelError(-child, "fork");
    const process = this.system.adoptProcess(child);
    process.fdTable.copyFrom(this.fdTable);
    return process;
  }

  /**
   * exit(2), in do_exit's order: exit_mm (the address space goes away; device mirrors hear
   * MMU_NOTIFY_RELEASE), then exit_files (every descriptor is closed; the last one of a file releases
   * it, with the mm already gone).
   */
  exit(): void {
    this.run("exit", this.doExit());
  }

  /**
   * exit(2)'s work, in the exiting thread (the OOM killer runs it for its victim too). The process is
   * dying from the first step on; a second exit meanwhile (the OOM killer's and the process's own, in
   * two threads) leaves the teardown to the first.
   */
  *doExit(): Kfn<void> {
    assert(this.alive, "process exits after it has exited", () => `pid ${this.pid}`);
    if (this.isDying) return;
    this.isDying = true;
    yield* exitMmap(this.k, this.mm);
    // do_exit: exit_mm before exit_files, so release runs with the address space gone.
    yield* this.fdTable.closeAll();
    this.alive = false;
    this.system.forgetProcess(this);
  }

  /**
   * The OOM killer's stand-in for a user fault that returned VM_FAULT_OOM (mm/oom_kill.ts): under
   * today's kernel with RAM left, nothing (the access retries); otherwise the process with the highest
   * oom_badness is killed. Returns true when this process was the victim (the access ends in SIGKILL),
   * false when the access should retry. The caller holds no mmap_lock.
   */
  private *outOfMemory(): Kfn<boolean> {
    const k = this.k;
    if (pagefaultOutOfMemory(k) === "retry") return false;
    // oom_evaluate_task: while an earlier victim is still dying, nobody else is chosen; its memory is
    // about to come back, so the access retries (or ends, if this process is that victim).
    if (this.system.liveProcesses().some((process) => process.isDying)) return this.isDying;
    const candidates = this.system.liveProcesses();
    const victim =
      candidates[
        selectBadProcess(
          k,
          candidates.map((process) => process.mm),
        )
      ] ?? this;
    k.stats.oomKills++;
    yield* victim.doExit();
    return victim === this;
  }

  /** The device files open in this process (opened or inherited across fork), lowest fd first. */
  get files(): readonly DeviceFile[] {
    return this.fdTable.files;
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return !this.alive;
  }

  /**
   * The MMU's part of an access, on the running thread's CPU: the pfn when the access may go ahead, or
   * -1 when it must fault. A TLB hit (a read, or a write through a writable dirty entry) uses the cached
   * pfn without looking at the PTE, stale or not; anything else walks the page table, setting the
   * accessed and dirty bits as the hardware does (without the PTE lock), and fills the TLB. A walk that
   * finds no usable PTE drops the address's entry, as a page fault does on x86. Never yields; the
   * caller offers the scheduling point (a lookup on tlbObject).
   */
  translate(vpn: number, write: boolean): number {
    const k = this.k;
    const sched = k.sched;
    const thread = sched.currentOrNull();
    const cpu = thread === null ? this.cpu : thread.cpu;
    const mmId = this.mm.id;
    const cached = k.tlb.lookup(cpu, mmId, vpn);
    // A read needs any entry; a write one that is writable and already dirty (else x86 walks to set D).
    if (cached >= 0 && (!write || (cached & 3) === 3)) {
      const pfn = Math.floor(cached * 0.25);
      sched.touch(pageObject(pfn));
      return pfn;
    }
    const table = k.pt.lookupTable(this.mm.root, vpn);
    if (table < 0) {
      const huge = k.pt.hugePmds > 0 ? this.translateHuge(vpn, write, cpu) : -1;
      if (huge < 0 && cached >= 0) k.tlb.invalidateLocal(cpu, mmId, vpn);
      return huge;
    }
    sched.touch(pteTableObject(table));
    const slot = PageTables.slot(table, vpn);
    let pte = k.pt.entries[slot]!;
    const need = write ? PRESENT_OK_WRITE : 1;
    if ((pte & need) !== need || pteProtNone(pte) || (write && pteSpecial(pte))) {
      if (cached >= 0) k.tlb.invalidateLocal(cpu, mmId, vpn);
      return -1;
    }
    const bits = _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
    if ((pte & bits) !== bits) {
      pte = pte - (pte & bits) + bits;
      k.pt.entries[slot] = pte;
    }
    const pfn = pteFrame(pte);
    k.tlb.fill(cpu, mmId, vpn, pfn, (pte & _PAGE_RW) !== 0 && !pteSpecial(pte), (pte & _PAGE_DIRTY) !== 0);
    sched.touch(pageObject(pfn));
    return pfn;
  }

  /**
   * translate's walk through a huge PMD: the pfn of the 4 KiB page at vpn within the folio when the leaf
   * allows the access (setting its accessed and dirty bits, and filling the TLB for that page), else -1.
   */
  private translateHuge(vpn: number, write: boolean, cpu: number): number {
    const k = this.k;
    const pmdKey = k.pt.lookupPmd(this.mm.root, vpn);
    if (pmdKey < 0) return -1;
    k.sched.touch(pmdObject(pmdKey));
    let leaf = k.pt.pmdLeaf(pmdKey);
    const need = write ? PRESENT_OK_WRITE : 1;
    if ((leaf & need) !== need || pteProtNone(leaf)) return -1;
    const bits = _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
    if ((leaf & bits) !== bits) {
      leaf = leaf - (leaf & bits) + bits;
      k.pt.setPmdLeaf(pmdKey, leaf);
    }
    const pfn = pteFrame(leaf) + (vpn % PAGES_PER_PMD);
    k.tlb.fill(cpu, this.mm.id, vpn, pfn, (leaf & _PAGE_RW) !== 0, (leaf & _PAGE_DIRTY) !== 0);
    k.sched.touch(pageObject(pfn));
    return pfn;
  }

  /** Whether the PTE at vpn now allows the access (the retry's walk would succeed), TLB aside. */
  private pteAllows(vpn: number, write: boolean): boolean {
    const k = this.k;
    const table = k.pt.lookupTable(this.mm.root, vpn);
    if (table < 0) {
      const leaf = k.pt.readPmdLeaf(this.mm.root, vpn);
      const need = write ? PRESENT_OK_WRITE : 1;
      return leaf !== 0 && (leaf & need) === need && !pteProtNone(leaf);
    }
    k.sched.touch(pteTableObject(table));
    const pte = k.pt.entries[PageTables.slot(table, vpn)]!;
    const need = write ? PRESENT_OK_WRITE : 1;
    return (pte & need) === need && !pteProtNone(pte) && !(write && pteSpecial(pte));
  }

  /**
   * One CPU access to the page at vpn: returns its pfn once the PTE allows the access, faulting as the
   * arch handler does (mmap_lock for read, find_vma, access_error, handle_mm_fault, mm_fault_error,
   * retry), or a negative number for the signal that ends it: -1 SIGSEGV, -2 SIGBUS, -3 SIGKILL (the
   * OOM killer chose this process; it has exited). `missed` says the caller's own translate of vpn has
   * just failed in the same step, so the first walk is skipped.
   */
  *accessPage(vpn: number, write: boolean, missed = false): Kfn<number> {
    const k = this.k;
    const mm = this.mm;
    const tlb = tlbObject(mm.id);
    let spinning = false;
    for (let attempt = 0; attempt < ACCESS_RETRIES_MAX; attempt++) {
      // The access itself (the TLB lookup, and the walk on a miss) is one step, after which the bytes
      // move; a retry after a fault that left the page absent (it waited for a migration, or lost a
      // race) spins until another thread progresses.
      if (k.sched.contended) {
        if (spinning) yield k.sched.atRetry(LABEL_RETRY, tlb);
        else yield k.sched.at(write ? LABEL_STORE : LABEL_LOAD, tlb);
      }
      // A process the OOM killer chose in another thread dies at its next return to user space.
      if (this.isDying) return ACCESS_KILLED;
      // `missed`: the caller's own translate has just failed in this same step, so the walk is not
      // repeated (nothing can have changed without a scheduling point in between).
      if (attempt > 0 || !missed) {
        const present = this.translate(vpn, write);
        if (present >= 0) return present;
      }
      // mmap_read_trylock first, as do_user_addr_fault does; uncontended it needs no scheduling point.
      if (k.sched.contended || !mm.mmapLock.tryDownRead()) yield* mm.mmapLock.downRead(LABEL_MMAP_LOCK);
      if (this.isDying) {
        // Killed while it waited for mmap_lock (lock_mm_and_find_vma is killable).
        mm.mmapLock.upRead();
        return ACCESS_KILLED;
      }
      const vma = mm.findVma(vpn);
      let ret: number;
      // access_error (arch/x86/mm/fault.c): a read needs any of VM_READ, VM_WRITE, VM_EXEC.
      if (vma === null || (vma.flags & (write ? VM_WRITE : VM_READ | VM_WRITE | VM_EXEC)) === 0) {
        ret = VM_FAULT_SIGSEGV;
      } else {
        this.faults++;
        ret = yield* handleMmFault(this.system.faultContext, vma, vpn, write ? FAULT_FLAG_WRITE : 0);
      }
      mm.mmapLock.upRead();
      // mm_fault_error: VM_FAULT_OOM first, and for a user access never a signal but the OOM path.
      if ((ret & VM_FAULT_OOM) !== 0) {
        if (yield* this.outOfMemory()) return ACCESS_KILLED;
        continue;
      }
      if ((ret & VM_FAULT_SIGSEGV) !== 0) return ACCESS_SEGV;
      if ((ret & VM_FAULT_SIGBUS) !== 0) return ACCESS_BUS;
      spinning = k.sched.contended && !this.pteAllows(vpn, write);
    }
    throw new LivelockError(
      `access to vpn ${vpn} retried ${ACCESS_RETRIES_MAX} times without progress: the kernel would retry for ever`,
    );
  }

  /**
   * The bytes [start, end) an access of `length` bytes at `addr` covers, with `end` capped one byte
   * past user space (enough to fault there): EINVAL for values no register holds, SIGSEGV for a
   * non-empty access that starts outside user space, null for an empty one.
   */
  private byteRange(addr: unknown, length: unknown, what: string): { start: number; end: number } | null {
    if (!isRegisterValue(addr) || !isRegisterValue(length))
      throw new KernelError(EINVAL, `${what}: an address and a length must be 64-bit integers`);
    if (addr >= 0 && addr <= TASK_SIZE && length >= 0 && Number.isSafeInteger(length)) {
      if (length === 0) return null;
      return { start: addr, end: Math.min(addr + length, ACCESS_END_MAX) };
    }
    const start = ulongArg(addr)!;
    const len = ulongArg(length)!;
    if (len === 0n) return null;
    if (start >= TASK_BYTES) throw new SignalError("SIGSEGV", addr, what);
    const end = start + len;
    return { start: Number(start), end: end < BigInt(ACCESS_END_MAX) ? Number(end) : ACCESS_END_MAX };
  }

  /**
   * Checks every page of [start, end) is in a VMA that allows the access: SIGSEGV at the first byte
   * that is not (the MMU's answer, before any page is faulted in).
   */
  private checkAccess(start: number, end: number, write: boolean, what: string): void {
    const first = Math.floor(start / PAGE_SIZE);
    const last = Math.floor((end - 1) / PAGE_SIZE);
    for (let vpn = first; vpn <= last; ) {
      const vma = this.mm.findVma(vpn);
      if (vma === null || (vma.flags & (write ? VM_WRITE : VM_READ | VM_WRITE | VM_EXEC)) === 0) {
        throw new SignalError("SIGSEGV", Math.max(start, vpn * PAGE_SIZE), what);
      }
      vpn = vma.end;
    }
  }

  private *pagesOf(
    addr: number,
    length: number,
    write: boolean,
    what: string,
    visit: (pfn: number, inPage: number, done: number, chunk: number) => void,
  ): Kfn<void> {
    let done = 0;
    while (done < length) {
      const at = addr + done;
      const vpn = Math.floor(at / PAGE_SIZE);
      const inPage = at % PAGE_SIZE;
      const chunk = Math.min(PAGE_SIZE - inPage, length - done);
      // The MMU's walk first; only a page it cannot use goes through the fault path. With other
      // threads alive the lookup is a scheduling point, which accessPage offers.
      let pfn = this.k.sched.contended ? -1 : this.translate(vpn, write);
      if (pfn < 0) pfn = yield* this.accessPage(vpn, write, !this.k.sched.contended);
      if (pfn < 0) throw new SignalError(accessSignal(pfn), at, what);
      visit(pfn, inPage, done, chunk);
      done += chunk;
    }
  }

  /** Byte accesses need the bytes store; the tokens store keeps one version per page. */
  private requireBytes(what: string): void {
    if (this.k.store.kind !== "bytes") {
      throw new NoBytesError(
        `${what}: the tokens store keeps one version per page, not bytes; use fillPages/checkPages or the bytes store`,
      );
    }
  }

  /** Reads `length` bytes at `addr` as the CPU would (bytes store only). */
  read(addr: number, length: number): Uint8Array {
    this.checkAlive("read");
    const range = this.byteRange(addr, length, "read");
    if (range === null) return new Uint8Array(0);
    this.requireBytes("read");
    this.checkAccess(range.start, range.end, false, "read");
    const bytes = range.end - range.start;
    let out: Uint8Array | null = null;
    try {
      if (bytes <= READ_BYTES_MAX) out = new Uint8Array(bytes);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
    }
    if (out === null)
      throw new KernelError(ENOMEM, `read: hmmsim will not hold ${bytes} bytes in one result`);
    const store = this.k.store;
    this.run(
      "read",
      this.pagesOf(range.start, bytes, false, "read", (pfn, inPage, done, chunk) =>
        store.readBytes(pfn, inPage, out, done, chunk),
      ),
    );
    return out;
  }

  /** Writes `data` at `addr` as the CPU would (bytes store only). */
  write(addr: number, data: Uint8Array): void {
    this.checkAlive("write");
    if (!isRegisterValue(addr)) throw new KernelError(EINVAL, "write: an address must be a 64-bit integer");
    if (!isByteBuffer(data)) throw new KernelError(EFAULT, "write: data must be a Uint8Array");
    const range = this.byteRange(addr, data.length, "write");
    if (range === null) return;
    this.requireBytes("write");
    this.checkAccess(range.start, range.end, true, "write");
    const store = this.k.store;
    this.run(
      "write",
      this.pagesOf(range.start, data.length, true, "write", (pfn, inPage, done, chunk) =>
        store.writeBytes(pfn, inPage, data, done, chunk),
      ),
    );
  }

  /** Loads a little-endian 32-bit unsigned word from `addr` as the CPU does (faulting as needed). */
  readU32(addr: number): number {
    return new DataView(this.read(addr, 4).buffer).getUint32(0, true);
  }

  /** Stores the low 32 bits of `value` (any 64-bit integer, as a C conversion to uint32_t does). */
  writeU32(addr: number, value: number): void {
    this.checkAlive("writeU32");
    const stored = storedInteger(value, 32);
    if (stored === null) throw new KernelError(EINVAL, "writeU32: the value must be a 64-bit integer");
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, Number(stored), true);
    this.write(addr, bytes);
  }

  /** Loads a little-endian 64-bit unsigned word from `addr` as the CPU does (faulting as needed). */
  readU64(addr: number): bigint {
    return new DataView(this.read(addr, 8).buffer).getBigUint64(0, true);
  }

  /** Stores a 64-bit value: a BigInt or an integer number, from -2^63 to 2^64 - 1. */
  writeU64(addr: number, value: bigint | number): void {
    this.checkAlive("writeU64");
    const stored = storedInteger(value, 64);
    if (stored === null) throw new KernelError(EINVAL, "writeU64: the value must be a 64-bit integer");
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, stored, true);
    this.write(addr, bytes);
  }

  /**
   * Writes every page of [addr, addr + npages pages) whole, page i getting the 32-bit value
   * `pageValue(seed, i)`; works in both stores (bytes: every word; tokens: the version). A CPU
   * access like write: EINVAL for an unaligned address (whole pages only) or values no register holds,
   * nothing for 0 pages, SIGSEGV before any page is touched when one is not writable.
   */
  fillPages(addr: number, npages: number, seed: number): void {
    this.checkAlive("fillPages");
    const { first, count } = this.pageRange(addr, npages, true, "fillPages");
    if (!isRegisterValue(seed)) throw new KernelError(EINVAL, "fillPages: the seed must be an integer");
    const store = this.k.store;
    this.run(
      "fillPages",
      this.eachPage(first, count, true, "fillPages", (pfn, i) => store.fill(pfn, pageValue(seed, i))),
    );
  }

  /** Reads every page and returns the indexes of those that do not hold pageValue(seed, i). */
  checkPages(addr: number, npages: number, seed: number): number[] {
    this.checkAlive("checkPages");
    const { first, count } = this.pageRange(addr, npages, false, "checkPages");
    if (!isRegisterValue(seed)) throw new KernelError(EINVAL, "checkPages: the seed must be an integer");
    const store = this.k.store;
    const wrong: number[] = [];
    this.run(
      "checkPages",
      this.eachPage(first, count, false, "checkPages", (pfn, i) => {
        if (!store.holds(pfn, pageValue(seed, i))) wrong.push(i);
      }),
    );
    return wrong;
  }

  /** Touches each page (read or write) without transferring data: faults pages in. */
  touch(addr: number, npages: number, write: boolean): void {
    this.checkAlive("touch");
    if (typeof write !== "boolean") throw new KernelError(EINVAL, "touch: write must be a boolean");
    const { first, count } = this.pageRange(addr, npages, write, "touch");
    this.run(
      "touch",
      this.eachPage(first, count, write, "touch", () => {}),
    );
  }

  /**
   * The pages of a whole-page access: EINVAL for values no register holds or an unaligned address;
   * none for a count of 0; SIGSEGV at the first page the access may not reach.
   */
  private pageRange(
    addr: unknown,
    npages: unknown,
    write: boolean,
    what: string,
  ): { first: number; count: number } {
    const start = ulongArg(addr);
    const count = ulongArg(npages);
    if (start === null || count === null)
      throw new KernelError(EINVAL, `${what}: an address and a page count must be 64-bit integers`);
    if (start % BigInt(PAGE_SIZE) !== 0n) throw new KernelError(EINVAL, `${what}: address not page aligned`);
    if (count === 0n) return { first: 0, count: 0 };
    if (start >= TASK_BYTES) throw new SignalError("SIGSEGV", addr as number, what);
    const end = start + count * BigInt(PAGE_SIZE);
    this.checkAccess(Number(start), end < BigInt(ACCESS_END_MAX) ? Number(end) : ACCESS_END_MAX, write, what);
    return { first: Number(start) / PAGE_SIZE, count: Number(count) };
  }

  /** Accesses `count` whole pages from vpn `first`, handing each pfn and its index to `visit`. */
  private *eachPage(
    first: number,
    count: number,
    write: boolean,
    what: string,
    visit: (pfn: number, index: number) => void,
  ): Kfn<void> {
    for (let i = 0; i < count; i++) {
      // The MMU's walk first; only a page it cannot use goes through the fault path (see pagesOf).
      let pfn = this.k.sched.contended ? -1 : this.translate(first + i, write);
      if (pfn < 0) pfn = yield* this.accessPage(first + i, write, !this.k.sched.contended);
      if (pfn < 0) throw new SignalError(accessSignal(pfn), (first + i) * PAGE_SIZE, what);
      visit(pfn, i);
    }
  }

  /**
   * pin_user_pages (FOLL_PIN, and FOLL_WRITE when `write`) from the page holding `addr`: returns the
   * pinned pfns. As the kernel's, it may pin fewer than asked: it stops at the first page it cannot
   * pin (outside a VMA, or without the access) and fails with that page's errno (EFAULT, ENOMEM) only
   * when it is the first. A count of 0 pins nothing. EINVAL for values no register holds and for a
   * `write` or `longterm` that is not a boolean. With `longterm` (FOLL_LONGTERM) a device-coherent page
   * is first migrated to RAM (migrate_device_coherent_folio), and the pin is on the RAM page; EBUSY when
   * such a page would not move.
   */
  pinPages(addr: number, npages: number, write: boolean, longterm = false): number[] {
    this.checkAlive("pin_user_pages");
    const start = ulongArg(addr);
    const count = ulongArg(npages);
    if (start === null || count === null)
      throw new KernelError(EINVAL, "pin_user_pages: an address and a page count must be 64-bit integers");
    if (typeof write !== "boolean") throw new KernelError(EINVAL, "pin_user_pages: write must be a boolean");
    if (typeof longterm !== "boolean")
      throw new KernelError(EINVAL, "pin_user_pages: longterm must be a boolean");
    if (count === 0n) return [];
    // Past the end of user space no VMA exists: the walk stops there whatever the count.
    const vpn = start < TASK_BYTES ? Number(start / BigInt(PAGE_SIZE)) : TASK_VPNS;
    const pages = count <= BigInt(TASK_VPNS) ? Number(count) : TASK_VPNS + 1;
    const pfns: number[] = [];
    const mm = this.mm;
    // The migration context: a long-term pin may have to migrate a device-coherent page.
    const ctx = this.system.migrateContext;
    const ledger = this.system.gup;
    const flags = FOLL_PIN | (write ? FOLL_WRITE : 0) | (longterm ? FOLL_LONGTERM : 0);
    const ret = this.run(
      "pin_user_pages",
      (function* () {
        yield* mm.mmapLock.downRead();
        try {
          return yield* getUserPages(ctx, ledger, mm, vpn, pages, flags, pfns);
        } finally {
          mm.mmapLock.upRead();
        }
      })(),
    );
    checkReturn(ret, "pin_user_pages");
    return pfns;
  }

  /**
   * unpin_user_pages: drops one pin per entry. Every entry must be a pfn with a pin outstanding (an
   * entry given twice needs two); otherwise EINVAL and nothing is unpinned (the kernel has no errno
   * for it: it would corrupt the refcount). EFAULT when `pfns` is not an array. Works after exit.
   */
  unpinPages(pfns: readonly number[]): void {
    if (!Array.isArray(pfns)) throw new KernelError(EFAULT, "unpin_user_pages: pfns must be an array");
    checkReturn(unpinUserPages(this.k, this.system.gup, pfns), "unpin_user_pages");
  }
}

/** The value fillPages writes into page i for a seed: distinct per page and per seed. */
export function pageValue(seed: number, index: number): number {
  let x = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x27d4eb2f) >>> 0;
  return (x ^ (x >>> 13)) >>> 0 || 1;
}
