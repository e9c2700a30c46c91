/**
 * mm_struct, vm_area_struct, anon_vma and address_space (include/linux/mm_types.h, mm.h, rmap.h, fs.h).
 * VMAs are few, so they are objects; everything per page lives in typed arrays elsewhere.
 *
 * Deliberate differences: VMA bounds are page numbers; an mm keeps its VMAs in a sorted array (the
 * kernel uses a maple tree); anon_vma chains are sets of VMAs per anon_vma rather than a tree of
 * anon_vma_chain nodes, which answers the same rmap question.
 */
import { assert } from "../base/assert.js";
import type { Vpn } from "../base/units.js";
import { type RwSem, WaitQueue } from "../sched/locks.js";
import type { MmuIntervalNotifier } from "./mmu_notifier.js";

/** VM_NONE: no vm_flags. */
export const VM_NONE = 0;
/** VM_READ: the VMA may be read. */
export const VM_READ = 0x1;
/** VM_WRITE: the VMA may be written. */
export const VM_WRITE = 0x2;
/** VM_EXEC: the VMA may be executed. */
export const VM_EXEC = 0x4;
/** VM_SHARED: writes are shared with other mappings of the same object (MAP_SHARED). */
export const VM_SHARED = 0x8;
/** VM_MAYREAD: mprotect may add VM_READ. */
export const VM_MAYREAD = 0x10;
/** VM_MAYWRITE: mprotect may add VM_WRITE. */
export const VM_MAYWRITE = 0x20;
/** VM_MAYEXEC: mprotect may add VM_EXEC. */
export const VM_MAYEXEC = 0x40;
/** VM_MAYSHARE: the mapping was created MAP_SHARED (kept even when VM_SHARED is not). */
export const VM_MAYSHARE = 0x80;
/** VM_GROWSDOWN: a stack that grows down (MAP_GROWSDOWN). */
export const VM_GROWSDOWN = 0x100;
/** VM_PFNMAP: raw pfns without struct pages are mapped (remap_pfn_range). */
export const VM_PFNMAP = 0x400;
/** VM_LOCKED: the pages are mlocked (MAP_LOCKED). */
export const VM_LOCKED = 0x2000;
/** VM_IO: memory-mapped I/O; never migrated or dumped. */
export const VM_IO = 0x4000;
/** VM_DONTCOPY: not copied into the child at fork (MADV_DONTFORK). */
export const VM_DONTCOPY = 0x20000;
/** VM_DONTEXPAND: mremap may not grow the VMA. */
export const VM_DONTEXPAND = 0x40000;
/** VM_ACCOUNT: the VMA is charged to the commit accounting. */
export const VM_ACCOUNT = 0x100000;
/** VM_HUGETLB: a hugetlbfs mapping. */
export const VM_HUGETLB = 0x400000;
/** VM_MIXEDMAP: a mix of pages with and without struct pages (vm_insert_page and vm_insert_pfn). */
export const VM_MIXEDMAP = 0x10000000;
/** MADV_HUGEPAGE was given: the VMA asks for transparent huge pages (hmmsim has none yet). */
export const VM_HUGEPAGE = 0x20000000;
/** MADV_NOHUGEPAGE (or MAP_STACK) was given: never back this VMA with transparent huge pages. */
export const VM_NOHUGEPAGE = 0x40000000;
/** VMAs whose pages are not normal: migration and most mm operations refuse them. */
export const VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
/** The access bits of vm_flags: VM_READ, VM_WRITE and VM_EXEC. */
export const VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;

/** An anon_vma: the set of VMAs in which the anonymous pages that point at it may be mapped. */
export class AnonVma {
  readonly vmas = new Set<Vma>();
  /** The VMA when exactly one is linked: the common case, answered without iterating the set. */
  soleVma: Vma | null = null;
  constructor(
    readonly id: number,
    readonly parent: AnonVma | null,
  ) {}

  /** anon_vma_chain_link: adds a VMA to the set that may map this anon_vma's pages. */
  link(vma: Vma): void {
    this.vmas.add(vma);
    this.soleVma = this.vmas.size === 1 ? vma : null;
  }

  /** Removes a VMA from the set (unlink_anon_vmas). */
  unlink(vma: Vma): void {
    this.vmas.delete(vma);
    this.soleVma = null;
    if (this.vmas.size === 1) for (const only of this.vmas) this.soleVma = only;
  }
}

/**
 * An address_space: the page cache of one file (tmpfs-like: pages live only in memory), and the VMAs
 * that map it (i_mmap).
 */
export class AddressSpace {
  /** Page cache: page offset → pfn (the kernel's i_pages xarray). */
  readonly pages = new Map<number, number>();
  readonly mmaps = new Set<Vma>();
  /** File size in bytes. */
  sizeBytes: number;

  constructor(
    readonly id: number,
    readonly name: string,
    sizeBytes: number,
    /** Backs a MAP_SHARED|MAP_ANONYMOUS mapping (shmem_zero_setup) rather than a named file. */
    readonly anonymousShmem: boolean,
  ) {
    this.sizeBytes = sizeBytes;
  }
}

/** What page->mapping points at: an anon_vma for anonymous pages, an address_space for file pages. */
export type Mapping = AnonVma | AddressSpace;

/** struct vm_area_struct: a range of pages [start, end) of one mm with the same flags and backing. */
export class Vma {
  /** The anon_vmas this VMA is linked into (its anon_vma_chain); its own anon_vma is the last. */
  anonVmaChain: AnonVma[] = [];

  constructor(
    readonly mm: MmStruct,
    public start: Vpn,
    public end: Vpn,
    public flags: number,
    /** vm_pgoff: file page offset of `start`; for anonymous VMAs, the vpn the VMA was created at. */
    public pgoff: number,
    public file: AddressSpace | null,
    public anonVma: AnonVma | null,
    /**
     * The driver whose file this VMA maps (vm_file of a device file whose ->mmap filled the VMA, as
     * lib/test_hmm.c's dmirror_fops_mmap does with vm_insert_page), or null. Such a VMA keeps
     * vma_init's dummy vm_ops: it is not anonymous, and has no ->fault. Deliberate difference: the VMA
     * holds no reference to the file (the kernel's get_file); nothing in it points back at the driver.
     */
    readonly driverFile: string | null = null,
  ) {
    assert(end > start, "a VMA covers at least one page", () => `${start}..${end}`);
  }

  /** Pages the VMA spans. */
  get pages(): number {
    return this.end - this.start;
  }

  /** vma_is_anonymous (!vma->vm_ops): no file behind it (private anonymous memory). */
  get isAnonymous(): boolean {
    return this.file === null && this.driverFile === null;
  }

  /** Whether the page `vpn` lies in [start, end). */
  contains(vpn: number): boolean {
    return vpn >= this.start && vpn < this.end;
  }

  /** linear_page_index: the page offset that `vpn` maps in this VMA's file or anon space. */
  linearIndex(vpn: number): number {
    return this.pgoff + (vpn - this.start);
  }

  /** The vpn at which this VMA maps page offset `index`, or -1 when it does not map it. */
  vpnOfIndex(index: number): number {
    const vpn = this.start + (index - this.pgoff);
    return vpn >= this.start && vpn < this.end ? vpn : -1;
  }

  /** The VMA's range and flags in hex, as /proc/PID/maps writes addresses. */
  toString(): string {
    const file = this.driverFile === null ? "" : ` ${this.driverFile}`;
    return `vma ${this.start.toString(16)}000-${this.end.toString(16)}000 flags 0x${this.flags.toString(16)}${file}`;
  }
}

/**
 * struct mm_struct: one address space, its VMAs, page-table root, mmap_lock and MMU notifier subscriptions.
 */
export class MmStruct {
  /** VMAs sorted by start, non-overlapping. */
  vmas: Vma[] = [];
  readonly notifiers: MmuIntervalNotifier[] = [];
  /** Subscriptions inserted during an invalidation, linked when the last one ends (deferred_list). */
  readonly deferredNotifiers: MmuIntervalNotifier[] = [];
  /** Resident pages counted per kind, like MM_ANONPAGES and MM_FILEPAGES. */
  rssAnon = 0;
  rssFile = 0;
  exited = false;
  /** mmu_notifier_subscriptions.invalidate_seq: odd while an invalidation is active. */
  notifierSeq = 0;
  activeInvalidations = 0;
  readonly notifierWaiters = new WaitQueue();

  constructor(
    readonly id: number,
    /** PGD index in the shared page-table pools. */
    readonly root: number,
    readonly mmapLock: RwSem,
  ) {}

  /** find_vma_intersection for one page: the VMA containing vpn, or null. */
  findVma(vpn: number): Vma | null {
    const vmas = this.vmas;
    let lo = 0;
    let hi = vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const vma = vmas[mid]!;
      if (vpn < vma.start) hi = mid - 1;
      else if (vpn >= vma.end) lo = mid + 1;
      else return vma;
    }
    return null;
  }

  /** find_vma: the first VMA that ends above vpn (it may start above vpn too), or null. */
  findVmaFrom(vpn: number): Vma | null {
    for (const vma of this.vmas) if (vma.end > vpn) return vma;
    return null;
  }

  /** VMAs that overlap [start, end), in order. */
  vmasIn(start: number, end: number): Vma[] {
    return this.vmas.filter((vma) => vma.start < end && vma.end > start);
  }

  /** Inserts a VMA in start order (vma_link); it must not overlap another. */
  insertVma(vma: Vma): void {
    const at = this.vmas.findIndex((other) => other.start > vma.start);
    const index = at < 0 ? this.vmas.length : at;
    const before = this.vmas[index - 1];
    const after = this.vmas[index];
    assert(
      before === undefined || before.end <= vma.start,
      "VMA overlaps the one before",
      () => `${before} / ${vma}`,
    );
    assert(
      after === undefined || vma.end <= after.start,
      "VMA overlaps the one after",
      () => `${vma} / ${after}`,
    );
    this.vmas.splice(index, 0, vma);
  }

  /** Removes a VMA the mm holds (vma_unlink); asserts that it holds it. */
  removeVma(vma: Vma): void {
    const index = this.vmas.indexOf(vma);
    assert(index >= 0, "removing a VMA the mm does not have", () => vma.toString());
    this.vmas.splice(index, 1);
  }
}
