/**
 * The kernel's global state in one object: the struct page arrays, RAM, page contents, page tables,
 * LRU, the rmap objects, every mm and every device pagemap. mm functions take it as their first
 * argument, where the kernel reaches the same state through globals and per-node structures.
 */
import { assert, assertAbout } from "../base/assert.js";
import { KeyedWaitQueues, LockTable, RwSem } from "../sched/locks.js";
import { OBJ_PMD, OBJ_PTE_TABLE } from "../sched/objects.js";
import { Scheduler, type SchedulerOptions } from "../sched/scheduler.js";
import type { Thread } from "../sched/thread.js";
import type { GupLedger } from "./gup.js";
import { freeHugeFolio, HugetlbPool } from "./hugetlb.js";
import { AddressSpace, AnonVma, type Mapping, MmStruct } from "./mm_types.js";
import { PageArrays, type PageFreer, PG_head, PG_hugetlb, PG_locked, PG_lru } from "./page.js";
import { PageAllocator } from "./page_alloc.js";
import { createPageStore, type PageStore, type StoreKind } from "./page_store.js";
import { PageTables } from "./pgtable.js";
import { LruState, lruDel } from "./swap.js";
import { Tlbs } from "./tlb.js";

/** Which migrate_vma protocol the kernel runs (see mm/migrate_vma.ts). */
export type ProtocolVersion = "seed" | "4.14" | "modern";
/** Every migrate_vma protocol version, oldest first. */
export const PROTOCOL_VERSIONS: readonly ProtocolVersion[] = ["seed", "4.14", "modern"];

/**
 * How a Kernel is built: RAM size, page store kind, protocol version, CPUs, scheduler options and fast paths.
 */
export interface KernelOptions {
  /** Frames of system RAM, the zero page included. */
  ramPages: number;
  store: StoreKind;
  protocol: ProtocolVersion;
  cpus?: number;
  scheduler?: SchedulerOptions;
  /** See Kernel.fastPaths (default true). */
  fastPaths?: boolean;
  /** /sys/kernel/mm/transparent_hugepage settings (default: enabled "madvise", use_zero_page on). */
  thp?: Partial<ThpSettings>;
  /**
   * Frames to size the struct-page arrays and the page store for up front (RAM plus the device memory
   * the system will register first), so that a small system is built without growing them.
   */
  pfnCapacityHint?: number;
}

/**
 * /sys/kernel/mm/transparent_hugepage/enabled: "always" gives every suitable anonymous VMA PMD-sized
 * THPs, "madvise" only those with MADV_HUGEPAGE, "never" none. hmmsim defaults to "madvise", which
 * many distributions choose, so that only ranges that ask for THPs (as hmm-tests' THP tests do) get them;
 * the kernel's Kconfig default is "always".
 */
export type ThpEnabled = "always" | "madvise" | "never";
/** The THP settings hmmsim models (sysfs transparent_hugepage/enabled and use_zero_page). */
export interface ThpSettings {
  enabled: ThpEnabled;
  /** transparent_hugepage/use_zero_page: a read fault maps the huge zero page (default true). */
  useZeroPage: boolean;
}

/** Something that takes back a free ZONE_DEVICE page (memremap.ts registers the pagemaps). */
export interface DevicePageFreer {
  /** Takes back a ZONE_DEVICE page whose last reference was dropped (the pagemap's page_free). */
  freeDevicePage(pfn: number): void;
}

export class Kernel implements PageFreer {
  readonly sched: Scheduler;
  readonly pages: PageArrays;
  readonly store: PageStore;
  readonly ram: PageAllocator;
  readonly pt = new PageTables();
  /** Every CPU's TLB (tlb.ts): user accesses translate through it. */
  readonly tlb: Tlbs;
  /** Split page-table locks, keyed by PTE table index. */
  readonly ptl: LockTable;
  /** PMD locks (pmd_lock), keyed by PMD slot (PageTables.lookupPmd). */
  readonly pmdLock: LockTable;
  readonly thp: ThpSettings;
  /**
   * The huge zero folio's head (huge_zero_folio), allocated by the first read fault that maps it and,
   * unlike the kernel's (freed by a shrinker when unused), kept for the life of the system; -1 before.
   */
  hugeZeroPfn = -1;
  /**
   * The references user space holds through GUP (System.gup), which a THP split moves from the head to
   * the pages they were taken for; null in a kernel no System owns.
   */
  gupLedger: GupLedger | null = null;
  /** The 2 MiB hstate's pool of hugetlb folios (nr_hugepages). */
  readonly hugetlb = new HugetlbPool();
  /** Sleepers on page locks, keyed by pfn (folio_waitqueue). */
  readonly pageWaiters = new KeyedWaitQueues();
  readonly lru: LruState;
  readonly protocol: ProtocolVersion;
  /**
   * Whether the migration core may take its shortcuts for the common case: the common entry of collect
   * and of migrate_device_unmap, and finalize's runs of pages that moved to a device, each straight on
   * the page arrays; and finalize without scheduling points while no other thread runs. They change
   * speed, never the resulting state; false runs everything through the general code, which
   * fast-paths.property.test.ts compares them against.
   */
  readonly fastPaths: boolean;
  readonly mms = new Map<number, MmStruct>();
  private readonly mappingById: (Mapping | undefined)[] = [undefined];
  private nextMmId = 1;
  /** First pfn above RAM not yet given to a device range. */
  nextDevicePfn: number;
  devicePageFreer: DevicePageFreer | null = null;
  /** Counters a user can read: page faults handled, by outcome. */
  readonly stats = {
    faults: 0,
    cowFaults: 0,
    zeroPageMaps: 0,
    migrationWaits: 0,
    deviceFaults: 0,
    /** Entries migrate_vma collected (cpages after collect), moved to their new page, and restored. */
    migrateCollected: 0,
    migrateMoved: 0,
    migrateRestored: 0,
    /** User faults that returned VM_FAULT_OOM and were retried, and processes the OOM killer killed. */
    oomRetries: 0,
    oomKills: 0,
    /** THP events (/proc/vmstat thp_fault_alloc, thp_fault_fallback, thp_split_pmd, thp_split_page). */
    thpFaultAlloc: 0,
    thpFaultFallback: 0,
    thpSplitPmd: 0,
    thpSplitPage: 0,
  };

  constructor(options: KernelOptions) {
    assert(
      Number.isSafeInteger(options.ramPages) && options.ramPages >= 2,
      "ramPages must be at least 2",
      () => String(options.ramPages),
    );
    this.sched = new Scheduler({ cpus: options.cpus ?? 2, ...options.scheduler });
    const capacity = Math.max(options.ramPages, options.pfnCapacityHint ?? 0);
    this.pages = new PageArrays(capacity);
    this.store = createPageStore(options.store, capacity);
    this.ram = new PageAllocator(this.pages, options.ramPages);
    this.ptl = new LockTable(this.sched, "page-table lock of PTE table", OBJ_PTE_TABLE);
    this.pmdLock = new LockTable(this.sched, "PMD lock of PMD", OBJ_PMD);
    this.thp = { enabled: options.thp?.enabled ?? "madvise", useZeroPage: options.thp?.useZeroPage ?? true };
    this.lru = new LruState(this.sched.cpus);
    this.tlb = new Tlbs(this.sched, this.sched.cpus);
    this.protocol = options.protocol;
    this.fastPaths = options.fastPaths ?? true;
    this.nextDevicePfn = Math.ceil(options.ramPages / 512) * 512;
    this.pages.freer = this;
    this.sched.trackLocks({
      releaseHeldBy: (thread) => this.releasePageLocksOf(thread),
      // The invariant checker finds page locks without a live holder itself, from lockHolder.
      heldByGoneThreads: () => [],
    });
  }

  /**
   * Starts (or stops) recording each step's footprint, the objects it touches, for the explorer's
   * partial-order reduction: the scheduler and the page arrays share one array.
   */
  recordFootprints(on: boolean): void {
    const footprint = on ? (this.sched.footprint ?? []) : null;
    this.sched.footprint = footprint;
    this.pages.footprint = footprint;
  }

  /** Unlocks every page `thread` has locked, waking their waiters: the thread failed. */
  private releasePageLocksOf(thread: Thread): string[] {
    const pages = this.pages;
    const released: string[] = [];
    for (let pfn = 0; pfn < pages.capacity; pfn++) {
      if (pages.lockHolder[pfn] !== thread.id) continue;
      pages.clear(pfn, PG_locked);
      pages.lockHolder[pfn] = 0;
      this.pageWaiters.wakeAll(pfn, this.sched);
      released.push(`page lock of pfn ${pfn}`);
    }
    return released;
  }

  /**
   * The last reference went: RAM returns to the allocator, device memory to its pagemap. PageArrays calls
   * it as the page freer (a direct method, not a closure, so the JIT inlines it on the hot free path).
   */
  freePage(pfn: number): void {
    if (this.pages.has(pfn, PG_lru)) lruDel(this, pfn);
    if (this.pages.isZoneDevice(pfn)) {
      assertAbout(this.devicePageFreer !== null, "device page freed with no pagemap registered", String, pfn);
      this.devicePageFreer.freeDevicePage(pfn);
      return;
    }
    if (this.pages.has(pfn, PG_hugetlb)) freeHugeFolio(this, pfn);
    else if (this.pages.has(pfn, PG_head)) this.ram.freeFolio(pfn);
    else this.ram.freePage(pfn);
  }

  /** Grows the pfn space so that frames below `capacity` exist (memremap_pages). */
  growPfnSpace(capacity: number): void {
    if (capacity <= this.pages.capacity) return;
    // Grown by at least half again, so device memory added chunk by chunk costs few copies.
    const grown = Math.max(capacity, Math.ceil(this.pages.capacity * 1.5));
    this.pages.grow(grown);
    this.store.grow(grown);
  }

  /** The live thread with scheduler id `id`, or null (id 0, a finished thread, or none such). */
  threadById(id: number): Thread | null {
    return id === 0 ? null : this.sched.byId(id);
  }

  /** mm_alloc: a new mm_struct with an empty page-table root and its own mmap_lock. */
  newMm(): MmStruct {
    const id = this.nextMmId++;
    const mm = new MmStruct(id, this.pt.newRoot(), new RwSem(this.sched, `mmap_lock of mm ${id}`));
    this.mms.set(id, mm);
    return mm;
  }

  /** anon_vma_alloc: a new anon_vma, a child of `parent` when one is given (anon_vma_fork). */
  newAnonVma(parent: AnonVma | null): AnonVma {
    const anonVma = new AnonVma(this.mappingById.length, parent);
    this.mappingById.push(anonVma);
    return anonVma;
  }

  /** A new address_space (a tmpfs file, or the shmem object behind a MAP_SHARED|MAP_ANONYMOUS mapping). */
  newAddressSpace(name: string, sizeBytes: number, anonymousShmem: boolean): AddressSpace {
    const space = new AddressSpace(this.mappingById.length, name, sizeBytes, anonymousShmem);
    this.mappingById.push(space);
    return space;
  }

  /** The anon_vma or address_space behind page->mapping, or null. */
  mappingOf(pfn: number): Mapping | null {
    const id = this.pages.mapping[pfn]!;
    return id === 0 ? null : (this.mappingById[id] ?? null);
  }

  /** Every address_space the kernel has created. */
  addressSpaces(): AddressSpace[] {
    return this.mappingById.filter((mapping): mapping is AddressSpace => mapping instanceof AddressSpace);
  }
}
