/**
 * A user process: its address space, the system calls that change it, and CPU accesses to its memory
 * that fault the way a CPU does (the arch page-fault handler: do_user_addr_fault).
 *
 * Every call runs as a kernel thread on the system's scheduler and returns when it finishes. System
 * calls throw KernelError with the errno the kernel returns; an access the kernel would answer with a
 * signal throws SignalError (SIGSEGV or SIGBUS) and changes nothing it had not already written.
 */
import { assert } from "./base/assert.js";
import { checkReturn, EFAULT, EINVAL, KernelError } from "./base/errno.js";
import { PAGE_SIZE } from "./base/units.js";
import { type DeviceFile, FileTable } from "./device.js";
import { dupMm, exitMmap } from "./mm/fork.js";
import { FOLL_PIN, FOLL_WRITE, getUserPages, unpinUserPage } from "./mm/gup.js";
import {
  FAULT_FLAG_WRITE,
  handleMmFault,
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
} from "./mm/memory.js";
import { type MmStruct, VM_EXEC, VM_READ, VM_WRITE } from "./mm/mm_types.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  sysMadvise,
  sysMmap,
  sysMprotect,
  sysMremap,
  sysMunmap,
} from "./mm/mmap.js";
import { NoBytesError } from "./mm/page_store.js";
import { _PAGE_ACCESSED, _PAGE_DIRTY, PageTables, pteFrame, pteProtNone, pteSpecial } from "./mm/pgtable.js";
import type { Kfn } from "./sched/thread.js";
import type { System, TmpFile } from "./system.js";

/** A CPU access the kernel answered with a signal. */
export class SignalError extends KernelError {
  constructor(
    readonly signal: "SIGSEGV" | "SIGBUS",
    readonly address: number,
    what: string,
  ) {
    super(EFAULT, `${what} at 0x${address.toString(16)}: ${signal}`);
  }
}

/** Retries of one access before hmmsim calls it a livelock (each retry follows a completed fault). */
const ACCESS_RETRIES_MAX = 10_000;
const PRESENT_OK_WRITE = 1 | 2; // _PAGE_PRESENT | _PAGE_RW

export interface MmapOptions {
  addr?: number;
  prot?: number;
  flags?: number;
  file?: TmpFile;
  offset?: number;
}

export class Process {
  /** Faults this process took (page faults that reached handle_mm_fault). */
  faults = 0;
  private alive = true;
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
    assert(this.alive, "process has exited", () => `pid ${this.pid}`);
    return this.k.sched.call(`${name} (pid ${this.pid})`, body, this.cpu);
  }

  /** mmap(2); defaults: PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS. Returns the address. */
  mmap(length: number, options: MmapOptions = {}): number {
    const file = options.file ?? null;
    const flags = options.flags ?? (file === null ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED);
    const req = {
      addr: options.addr ?? 0,
      length,
      prot: options.prot ?? PROT_READ | PROT_WRITE,
      flags,
      file: file?.space ?? null,
      offset: options.offset ?? 0,
    };
    return checkReturn(this.run("mmap", sysMmap(this.k, this.mm, req)), "mmap");
  }

  munmap(addr: number, length: number): void {
    checkReturn(this.run("munmap", sysMunmap(this.k, this.mm, addr, length)), "munmap");
  }

  mprotect(addr: number, length: number, prot: number): void {
    checkReturn(this.run("mprotect", sysMprotect(this.k, this.mm, addr, length, prot)), "mprotect");
  }

  mremap(oldAddr: number, oldLength: number, newLength: number, flags = 0, newAddr = 0): number {
    return checkReturn(
      this.run("mremap", sysMremap(this.k, this.mm, oldAddr, oldLength, newLength, flags, newAddr)),
      "mremap",
    );
  }

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
    this.run("exit", exitMmap(this.k, this.mm));
    this.fdTable.closeAll();
    this.alive = false;
    this.system.forgetProcess(this);
  }

  /** The device files open in this process (opened or inherited across fork), lowest fd first. */
  get files(): readonly DeviceFile[] {
    return this.fdTable.files;
  }

  get exited(): boolean {
    return !this.alive;
  }

  /**
   * The MMU's part of an access: the pfn when the PTE allows it (setting the accessed and dirty bits
   * as the hardware does), or -1 when the access must fault. Never yields.
   */
  translate(vpn: number, write: boolean): number {
    const k = this.k;
    const table = k.pt.lookupTable(this.mm.root, vpn);
    if (table < 0) return -1;
    const slot = PageTables.slot(table, vpn);
    const pte = k.pt.entries[slot]!;
    const need = write ? PRESENT_OK_WRITE : 1;
    if ((pte & need) !== need || pteProtNone(pte) || (write && pteSpecial(pte))) return -1;
    const bits = _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
    if ((pte & bits) !== bits) k.pt.entries[slot] = pte - (pte & bits) + bits;
    return pteFrame(pte);
  }

  /**
   * One CPU access to the page at vpn: returns its pfn once the PTE allows the access, faulting as the
   * arch handler does (mmap_lock for read, find_vma, access_error, handle_mm_fault, retry).
   */
  *accessPage(vpn: number, write: boolean): Kfn<number> {
    const k = this.k;
    const mm = this.mm;
    for (let attempt = 0; attempt < ACCESS_RETRIES_MAX; attempt++) {
      const present = this.translate(vpn, write);
      if (present >= 0) return present;
      // mmap_read_trylock first, as do_user_addr_fault does; uncontended it needs no scheduling point.
      if (k.sched.contended || !mm.mmapLock.tryDownRead()) yield* mm.mmapLock.downRead();
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
      if ((ret & VM_FAULT_SIGSEGV) !== 0) return -1;
      if ((ret & (VM_FAULT_SIGBUS | VM_FAULT_OOM)) !== 0) return -2;
    }
    throw new Error(`access to vpn ${vpn} retried ${ACCESS_RETRIES_MAX} times: livelock`);
  }

  /** Checks every page of [addr, addr + length) is in a VMA that allows the access (SIGSEGV otherwise). */
  private checkAccess(addr: number, length: number, write: boolean, what: string): void {
    if (!Number.isSafeInteger(addr) || addr < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new KernelError(EINVAL, `${what}: bad address or length`);
    }
    const first = Math.floor(addr / PAGE_SIZE);
    const last = Math.floor((addr + Math.max(length, 1) - 1) / PAGE_SIZE);
    for (let vpn = first; vpn <= last; ) {
      const vma = this.mm.findVma(vpn);
      if (vma === null || (vma.flags & (write ? VM_WRITE : VM_READ | VM_WRITE | VM_EXEC)) === 0) {
        throw new SignalError("SIGSEGV", Math.max(addr, vpn * PAGE_SIZE), what);
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
      // The MMU's walk first; only a page it cannot use goes through the fault path.
      let pfn = this.translate(vpn, write);
      if (pfn < 0) pfn = yield* this.accessPage(vpn, write);
      if (pfn === -1) throw new SignalError("SIGSEGV", at, what);
      if (pfn === -2) throw new SignalError("SIGBUS", at, what);
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

  /** Reads bytes as the CPU would (bytes store only). */
  read(addr: number, length: number): Uint8Array {
    this.requireBytes("read");
    this.checkAccess(addr, length, false, "read");
    const out = new Uint8Array(length);
    const store = this.k.store;
    this.run(
      "read",
      this.pagesOf(addr, length, false, "read", (pfn, inPage, done, chunk) =>
        store.readBytes(pfn, inPage, out, done, chunk),
      ),
    );
    return out;
  }

  /** Writes bytes as the CPU would (bytes store only). */
  write(addr: number, data: Uint8Array): void {
    this.requireBytes("write");
    this.checkAccess(addr, data.length, true, "write");
    const store = this.k.store;
    this.run(
      "write",
      this.pagesOf(addr, data.length, true, "write", (pfn, inPage, done, chunk) =>
        store.writeBytes(pfn, inPage, data, done, chunk),
      ),
    );
  }

  readU32(addr: number): number {
    return new DataView(this.read(addr, 4).buffer).getUint32(0, true);
  }

  writeU32(addr: number, value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
    this.write(addr, bytes);
  }

  readU64(addr: number): bigint {
    return new DataView(this.read(addr, 8).buffer).getBigUint64(0, true);
  }

  writeU64(addr: number, value: bigint): void {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    this.write(addr, bytes);
  }

  /**
   * Writes every page of [addr, addr + npages pages) whole, page i getting the 32-bit value
   * `pageValue(seed, i)`; works in both stores (bytes: every word; tokens: the version).
   */
  fillPages(addr: number, npages: number, seed: number): void {
    this.checkPageRange(addr, npages, true, "fillPages");
    const store = this.k.store;
    const first = addr / PAGE_SIZE;
    const self = this;
    this.run(
      "fillPages",
      (function* () {
        for (let i = 0; i < npages; i++) {
          // The MMU's walk first; only a page it cannot use goes through the fault path.
          let pfn = self.translate(first + i, true);
          if (pfn < 0) pfn = yield* self.accessPage(first + i, true);
          if (pfn < 0)
            throw new SignalError(pfn === -1 ? "SIGSEGV" : "SIGBUS", (first + i) * PAGE_SIZE, "fillPages");
          store.fill(pfn, pageValue(seed, i));
        }
      })(),
    );
  }

  /** Reads every page and returns the indexes of those that do not hold pageValue(seed, i). */
  checkPages(addr: number, npages: number, seed: number): number[] {
    this.checkPageRange(addr, npages, false, "checkPages");
    const store = this.k.store;
    const first = addr / PAGE_SIZE;
    const wrong: number[] = [];
    const self = this;
    this.run(
      "checkPages",
      (function* () {
        for (let i = 0; i < npages; i++) {
          // The MMU's walk first; only a page it cannot use goes through the fault path.
          let pfn = self.translate(first + i, false);
          if (pfn < 0) pfn = yield* self.accessPage(first + i, false);
          if (pfn < 0)
            throw new SignalError(pfn === -1 ? "SIGSEGV" : "SIGBUS", (first + i) * PAGE_SIZE, "checkPages");
          if (!store.holds(pfn, pageValue(seed, i))) wrong.push(i);
        }
      })(),
    );
    return wrong;
  }

  /** Touches each page (read or write) without transferring data: faults pages in. */
  touch(addr: number, npages: number, write: boolean): void {
    this.checkPageRange(addr, npages, write, "touch");
    const first = addr / PAGE_SIZE;
    const self = this;
    this.run(
      "touch",
      (function* () {
        for (let i = 0; i < npages; i++) {
          // The MMU's walk first; only a page it cannot use goes through the fault path.
          let pfn = self.translate(first + i, write);
          if (pfn < 0) pfn = yield* self.accessPage(first + i, write);
          if (pfn < 0)
            throw new SignalError(pfn === -1 ? "SIGSEGV" : "SIGBUS", (first + i) * PAGE_SIZE, "touch");
        }
      })(),
    );
  }

  private checkPageRange(addr: number, npages: number, write: boolean, what: string): void {
    if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0)
      throw new KernelError(EINVAL, `${what}: address not page aligned`);
    if (!Number.isSafeInteger(npages) || npages <= 0)
      throw new KernelError(EINVAL, `${what}: page count must be positive`);
    this.checkAccess(addr, npages * PAGE_SIZE, write, what);
  }

  /** pin_user_pages (FOLL_PIN, and FOLL_WRITE when `write`): returns the pinned pfns. */
  pinPages(addr: number, npages: number, write: boolean): number[] {
    if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0 || npages <= 0)
      throw new KernelError(EINVAL, "pin_user_pages");
    const pfns: number[] = [];
    const mm = this.mm;
    const ctx = this.system.faultContext;
    const ledger = this.system.gup;
    const ret = this.run(
      "pin_user_pages",
      (function* () {
        yield* mm.mmapLock.downRead();
        try {
          return yield* getUserPages(
            ctx,
            ledger,
            mm,
            addr / PAGE_SIZE,
            npages,
            FOLL_PIN | (write ? FOLL_WRITE : 0),
            pfns,
          );
        } finally {
          mm.mmapLock.upRead();
        }
      })(),
    );
    checkReturn(ret, "pin_user_pages");
    return pfns;
  }

  /** unpin_user_pages. */
  unpinPages(pfns: readonly number[]): void {
    for (const pfn of pfns) unpinUserPage(this.k, this.system.gup, pfn);
  }
}

/** The value fillPages writes into page i for a seed: distinct per page and per seed. */
export function pageValue(seed: number, index: number): number {
  let x = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x27d4eb2f) >>> 0;
  return (x ^ (x >>> 13)) >>> 0 || 1;
}
