// minigpu: a complete HMM driver in one page, written against `hmmsim/driver` only. It registers
// device-private memory, migrates a range of a process to it, mirrors the process (hmm_range_fault
// under an mmu interval notifier, Documentation/mm/hmm.rst's pattern), gives a page back when the CPU
// touches it (migrate_to_ram) and evicts all its memory. Copy it and change what your device does.
import assert from "node:assert/strict";
import {
  addrOf,
  allocLockedPage,
  type DevPagemap,
  type DriverContext,
  EBUSY,
  HMM_PFN_REQ_FAULT,
  type HmmRange,
  hasFlag,
  hmmPfnToPfn,
  hmmRangeFault,
  isDevicePrivateEntry,
  KernelError,
  type Kfn,
  Lock,
  MEMORY_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_SYSTEM,
  type MigrateVmaArgs,
  type MmStruct,
  type MmuIntervalNotifier,
  memremapPages,
  migrateDeviceFinalize,
  migrateDevicePages,
  migrateDeviceRange,
  migratePfn,
  migratePfnToPfn,
  migrateVmaFinalize,
  migrateVmaPages,
  migrateVmaSetup,
  mmuIntervalNotifierInsert,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  PAGE_SIZE,
  type Process,
  pteFrame,
  ptePresent,
  System,
  TASK_SIZE,
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  type VmFault,
  vpnOf,
  zoneDevicePageInit,
} from "hmmsim/driver";

export class MiniGpu {
  readonly pgmap: DevPagemap;
  /** The device page table: vpn → device-visible pfn. Holds no page references, as a mirror must not. */
  readonly pt = new Map<number, number>();
  private readonly ptLock: Lock;
  private readonly free: number[] = [];
  private readonly notifier: MmuIntervalNotifier;
  private readonly mm: MmStruct;

  /** module_init + open(): memremap_pages, then mirror one process's whole address space. */
  constructor(readonly ctx: DriverContext, proc: Process, pages: number) {
    this.mm = proc.mm;
    this.ptLock = new Lock(ctx.sched, "minigpu page table");
    this.pgmap = memremapPages(ctx.kernel, ctx.pagemaps, MEMORY_DEVICE_PRIVATE, pages, this, {
      pageFree: (pfn) => this.free.push(pfn),
      migrateToRam: (vmf) => this.migrateToRam(vmf),
    });
    for (let pfn = this.pgmap.endPfn - 1; pfn >= this.pgmap.startPfn; pfn--) this.free.push(pfn);
    // Page numbers, as every range in hmmsim/driver but MigrateVmaArgs' (vpnOf converts).
    this.notifier = mmuIntervalNotifierInsert(this.mm, vpnOf(0), vpnOf(TASK_SIZE), {
      // Every invalidation, our own migrations included: move the sequence, drop the entries.
      invalidate: (sub, range, seq) => this.invalidate(sub, range.start, range.end, seq),
    });
    ctx.registerInvariantChecker(() => this.check());
  }

  private *invalidate(sub: MmuIntervalNotifier, start: number, end: number, seq: number): Kfn<boolean> {
    yield* this.ptLock.lock();
    mmuIntervalSetSeq(sub, seq);
    for (const vpn of [...this.pt.keys()]) if (vpn >= start && vpn < end) this.pt.delete(vpn);
    this.ptLock.unlock();
    return true;
  }

  /** Moves [addr, addr + bytes) into device memory; returns the pages moved. */
  *migrateToDevice(addr: number, bytes: number): Kfn<number> {
    const { kernel: k, layout: L, migrate } = this.ctx;
    const npages = bytes / PAGE_SIZE;
    yield* this.mm.mmapLock.downRead();
    try {
      const vma = this.mm.findVma(vpnOf(addr));
      const src = new Float64Array(npages);
      const dst = new Float64Array(npages);
      // Bytes here: struct migrate_vma's start and end are addresses.
      const args: MigrateVmaArgs = {
        vma,
        start: addr,
        end: addr + bytes,
        src,
        dst,
        pgmapOwner: this,
        flags: MIGRATE_VMA_SELECT_SYSTEM,
      };
      const ret = yield* migrateVmaSetup(migrate, args);
      if (ret !== 0) throw new KernelError(-ret, "minigpu: migrate_vma_setup");
      let moved = 0;
      for (let i = 0; i < npages; i++) {
        const dpfn = hasFlag(src[i]!, L.MIGRATE) ? this.free.pop() : undefined;
        if (dpfn === undefined) continue; // dst stays 0: that page stays where it is
        zoneDevicePageInit(k, this.ctx.pagemaps, dpfn); // refcount 1, locked
        const spfn = migratePfnToPfn(L, src[i]!);
        if (spfn >= 0) k.store.copy(dpfn, spfn); // the "DMA"
        else k.store.zero(dpfn); // a hole: nothing to copy
        dst[i] = migratePfn(L, dpfn) + (hasFlag(src[i]!, L.WRITE) ? L.WRITE : 0);
        moved++;
      }
      yield* migrateVmaPages(migrate, args);
      yield* migrateVmaFinalize(migrate, args);
      return moved;
    } finally {
      this.mm.mmapLock.upRead();
    }
  }

  /** A device read of `length` bytes at addr (within one page), through the device page table. */
  *deviceRead(addr: number, length: number): Kfn<Uint8Array> {
    const vpn = vpnOf(addr);
    for (let attempt = 0; attempt < 100; attempt++) {
      yield* this.ptLock.lock();
      const pfn = this.pt.get(vpn);
      if (pfn !== undefined) {
        const out = new Uint8Array(length);
        this.ctx.kernel.store.readBytes(pfn, addr % PAGE_SIZE, out, 0, length);
        this.ptLock.unlock();
        return out;
      }
      this.ptLock.unlock();
      yield* this.fault(vpn);
    }
    throw new KernelError(EBUSY, "minigpu: device fault kept retrying");
  }

  /** The device's page fault: hmm_range_fault, then map under the lock unless an invalidation ran. */
  private *fault(vpn: number): Kfn<void> {
    const range: HmmRange = {
      notifier: this.notifier,
      notifierSeq: yield* mmuIntervalReadBegin(this.ctx.kernel, this.notifier),
      start: vpn, // page numbers: hmm_range's start and end are addresses in the kernel
      end: vpn + 1,
      hmmPfns: new Float64Array(1),
      defaultFlags: HMM_PFN_REQ_FAULT,
      pfnFlagsMask: 0,
      devPrivateOwner: this, // our own device pages are reported, not faulted back
    };
    yield* this.mm.mmapLock.downRead();
    const ret = yield* hmmRangeFault(this.ctx.migrate, this.mm, range);
    this.mm.mmapLock.upRead();
    if (ret === -EBUSY) return; // an invalidation ran: the caller retries
    if (ret !== 0) throw new KernelError(-ret, "minigpu: hmm_range_fault");
    yield* this.ptLock.lock();
    const stale = mmuIntervalReadRetry(this.notifier, range.notifierSeq);
    if (!stale) this.pt.set(vpn, hmmPfnToPfn(range.hmmPfns[0]!));
    this.ptLock.unlock();
  }

  /** dev_pagemap_ops.migrate_to_ram: the CPU touched one of our pages; copy it back to RAM. */
  private *migrateToRam(vmf: VmFault): Kfn<number> {
    const { kernel: k, layout: L, migrate } = this.ctx;
    const src = new Float64Array(1);
    const dst = new Float64Array(1);
    const start = addrOf(vmf.vpn);
    const args: MigrateVmaArgs = {
      vma: vmf.vma,
      start,
      end: start + PAGE_SIZE,
      src,
      dst,
      pgmapOwner: this,
      flags: MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
      faultPage: vmf.page,
    };
    if ((yield* migrateVmaSetup(migrate, args)) !== 0) return VM_FAULT_SIGBUS;
    let ret = 0;
    if (hasFlag(src[0]!, L.MIGRATE)) {
      const dpfn = allocLockedPage(k);
      if (dpfn < 0) ret = VM_FAULT_OOM;
      else {
        k.store.copy(dpfn, migratePfnToPfn(L, src[0]!));
        dst[0] = migratePfn(L, dpfn) + (hasFlag(src[0]!, L.WRITE) ? L.WRITE : 0);
      }
    }
    yield* migrateVmaPages(migrate, args); // even on failure: finalize restores the entry
    yield* migrateVmaFinalize(migrate, args);
    return ret;
  }

  /** Evicts every page of device memory to RAM (migrate_device_range), as on unload. */
  *evict(): Kfn<number> {
    const { kernel: k, layout: L, migrate } = this.ctx;
    const n = this.pgmap.pages;
    const src = new Float64Array(n);
    const dst = new Float64Array(n);
    yield* migrateDeviceRange(migrate, src, this.pgmap.startPfn, n);
    let moved = 0;
    for (let i = 0; i < n; i++) {
      const dpfn = hasFlag(src[i]!, L.MIGRATE) ? allocLockedPage(k) : -1;
      if (dpfn < 0) continue;
      k.store.copy(dpfn, migratePfnToPfn(L, src[i]!));
      dst[i] = migratePfn(L, dpfn) + (hasFlag(src[i]!, L.WRITE) ? L.WRITE : 0);
      moved++;
    }
    yield* migrateDevicePages(migrate, src, dst, n);
    yield* migrateDeviceFinalize(migrate, src, dst, n);
    return moved;
  }

  /** The invariant checker: each device entry names the page the CPU maps there (or device-private). */
  private check(): string[] {
    const bad: string[] = [];
    for (const [vpn, pfn] of this.pt) {
      const pte = this.ctx.kernel.pt.read(this.mm.root, vpn);
      const cpu = ptePresent(pte) || isDevicePrivateEntry(pte) ? pteFrame(pte) : -1;
      if (cpu !== pfn) bad.push(`vpn 0x${vpn.toString(16)}: device maps pfn ${pfn}, the CPU ${cpu}`);
    }
    return bad;
  }
}

/** Runs minigpu through its life in a fresh system, asserting what a user sees at each step. */
export function main(log: (line: string) => void = console.log): void {
  const system = new System({ ram: "16MiB", devices: [] }); // no dmirror: only our driver
  const proc = system.spawn();
  const gpu = system.attachDriver("minigpu", (ctx) => new MiniGpu(ctx, proc, 16));
  const run = <T>(name: string, body: Kfn<T>): T => system.kernel.sched.call(name, body);
  const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
  const addr = proc.mmap(4 * PAGE_SIZE);
  const words = ["alpha", "bravo", "charlie", "delta"];
  words.forEach((word, i) => proc.write(addr + i * PAGE_SIZE, new TextEncoder().encode(word)));
  const cpuEntry = (i: number) => system.kernel.pt.read(proc.mm.root, vpnOf(addr) + i);

  assert.equal(run("migrate", gpu.migrateToDevice(addr, 4 * PAGE_SIZE)), 4);
  assert(words.every((_, i) => isDevicePrivateEntry(cpuEntry(i))), "every page is device-private");
  assert.equal(gpu.pgmap.pagesInUse, 4);
  assert.deepEqual(system.checkInvariants(), []);
  log(`migrated 4 pages to minigpu (pfns ${gpu.pgmap.startPfn}..)`);

  const read = (i: number) => gpu.deviceRead(addr + i * PAGE_SIZE, words[i]!.length);
  const seen = words.map((_, i) => text(run("device read", read(i))));
  assert.deepEqual(seen, words);
  assert.equal(gpu.pt.size, 4); // mirrored through hmm_range_fault
  assert.deepEqual(system.checkInvariants(), []);
  log(`the device reads ${seen.join(" ")}`);

  assert.equal(text(proc.read(addr, 5)), "alpha"); // a CPU fault: migrate_to_ram
  assert(ptePresent(cpuEntry(0)) && !isDevicePrivateEntry(cpuEntry(0)), "page 0 is back in RAM");
  assert.equal(gpu.pgmap.pagesInUse, 3);
  assert(!gpu.pt.has(vpnOf(addr)), "the migration invalidated the device's entry");
  assert.deepEqual(system.checkInvariants(), []);
  log("the CPU read page 0 back: alpha");

  assert.equal(run("evict", gpu.evict()), 3);
  assert.equal(gpu.pgmap.pagesInUse, 0);
  assert.equal(gpu.pt.size, 0);
  assert.deepEqual(words.map((word, i) => text(proc.read(addr + i * PAGE_SIZE, word.length))), words);
  assert.deepEqual(system.checkInvariants(), []);
  log("evicted 3 pages; every byte is intact and device memory is empty");
}
