/**
 * Page tables (arch/x86/include/asm/pgtable*.h, include/linux/swapops.h): four levels of 512 entries
 * over a 48-bit address space, as typed-array pools shared by every mm.
 *
 * A PTE is one number: `frame * 1024 + bits`, where frame is a pfn (present entries) or a swap offset
 * (swap-type entries: migration, device-private, device-exclusive), and bits are below.
 * A huge PMD (pmd_trans_huge: a PMD-mapped transparent huge page or the huge zero page) is a PMD slot
 * with no PTE table below it and a leaf word in `pmdLeaves`, encoded as a PTE of the folio's head.
 * Deliberate differences: bit positions are hmmsim's own; no huge PUDs; no page table is deposited
 * with a huge PMD (split_huge_pmd allocates the PTE table it fills); munmap frees the PTE tables of the
 * 2 MiB spans no VMA covers any more (free_pgtables), while the directory levels above them stay until
 * the mm goes away.
 */
import { assert, assertAbout } from "../base/assert.js";
import { PTRS_PER_TABLE } from "../base/units.js";

/** _PAGE_PRESENT: the entry maps a page the CPU may access. */
export const _PAGE_PRESENT = 1;
/** _PAGE_RW: the page is writable through this entry. */
export const _PAGE_RW = 2;
/** _PAGE_DIRTY: the page was written through this entry. */
export const _PAGE_DIRTY = 4;
/** _PAGE_ACCESSED: the page was accessed through this entry (pte_young). */
export const _PAGE_ACCESSED = 8;
/** pte_special: no struct page is reference-counted through this entry (the zero page). */
export const _PAGE_SPECIAL = 16;
/** Present to the kernel but inaccessible to the CPU (PROT_NONE). */
export const _PAGE_PROTNONE = 32;
const BITS_SCALE = 1024;
/**
 * 1 / BITS_SCALE. Hot decoders multiply by the inverse of a power of two, which is exact and gives
 * the same double as the division, at a fraction of a division's latency.
 */
const FRAME_UNIT = 1 / BITS_SCALE;
const SWAP_TYPE_SHIFT = 6; // swap type lives in bits 6..8
const SWAP_TYPE_SHIFT_SCALE = 2 ** SWAP_TYPE_SHIFT;
const SWAP_TYPE_MASK = 7 * SWAP_TYPE_SHIFT_SCALE;

/** Swap entry types (include/linux/swap.h): hmmsim has no real swap, only these special types. */
export const SWP_MIGRATION_READ = 1;
/** SWP_MIGRATION_WRITE: a migration entry of a page that was mapped writable. */
export const SWP_MIGRATION_WRITE = 2;
/** SWP_DEVICE_READ: a device-private entry of a page mapped read-only. */
export const SWP_DEVICE_READ = 3;
/** SWP_DEVICE_WRITE: a device-private entry of a page mapped writable. */
export const SWP_DEVICE_WRITE = 4;
/**
 * SWP_DEVICE_EXCLUSIVE: a device-exclusive entry (make_device_exclusive): the CPU faults to take the page
 * back.
 */
export const SWP_DEVICE_EXCLUSIVE = 5;
/**
 * SWP_MIGRATION_READ_EXCLUSIVE: a migration entry of a read-only page that was exclusive to its anonymous
 * mapping (PG_anon_exclusive).
 */
export const SWP_MIGRATION_READ_EXCLUSIVE = 6;

/**
 * Whether a number can be the frame of an entry: an integer from 0 to 2^43 - 1, so that frame * 1024 +
 * bits stays an exact double. Math.floor rather than Number.isSafeInteger, which the JIT does not
 * inline: every entry made passes through here.
 */
function isFrame(frame: number): boolean {
  return frame >= 0 && frame < MAX_FRAMES && Math.floor(frame) === frame;
}
const MAX_FRAMES = 2 ** 43;

/** pte_none. */
export function pteNone(pte: number): boolean {
  return pte === 0;
}

/** pte_present. */
export function ptePresent(pte: number): boolean {
  return (pte & _PAGE_PRESENT) !== 0;
}

/** pte_pfn for present entries, swp_offset for swap entries. */
export function pteFrame(pte: number): number {
  return (pte - (pte & (BITS_SCALE - 1))) * FRAME_UNIT;
}

/** The flag bits of an entry (everything below the frame). */
export function pteBits(pte: number): number {
  return pte & (BITS_SCALE - 1);
}

/** pte_write: the entry allows writes. */
export function pteWrite(pte: number): boolean {
  return (pte & _PAGE_RW) !== 0;
}

/** pte_dirty. */
export function pteDirty(pte: number): boolean {
  return (pte & _PAGE_DIRTY) !== 0;
}

/** pte_young: the accessed bit is set. */
export function pteYoung(pte: number): boolean {
  return (pte & _PAGE_ACCESSED) !== 0;
}

/** pte_special: no struct page is reference-counted through this entry. */
export function pteSpecial(pte: number): boolean {
  return (pte & _PAGE_SPECIAL) !== 0;
}

/** pte_protnone: a PROT_NONE entry (present to the kernel, not to the CPU). */
export function pteProtNone(pte: number): boolean {
  return (pte & _PAGE_PROTNONE) !== 0;
}

/** pfn_pte: a present entry for `pfn` with the given bits (present is added). */
export function mkPte(pfn: number, bits: number): number {
  assertAbout(isFrame(pfn), "pte pfn out of range", String, pfn);
  return pfn * BITS_SCALE + (bits | _PAGE_PRESENT);
}

/** The entry with the bits `set` added and then the bits `clear` removed; the frame is kept. */
export function pteWithBits(pte: number, set: number, clear: number): number {
  const bits = (pteBits(pte) | set) & ~clear;
  return pte - pteBits(pte) + bits;
}

/** is_swap_pte: not none and not present. */
export function isSwapPte(pte: number): boolean {
  return pte !== 0 && (pte & _PAGE_PRESENT) === 0;
}

/** swp_type: the type of a swap entry (a SWP_* value). */
export function swapType(pte: number): number {
  // A shift: (pte & SWAP_TYPE_MASK) is a small non-negative integer.
  return (pte & SWAP_TYPE_MASK) >> SWAP_TYPE_SHIFT;
}

/** A swap-type entry; `young`/`dirty` carry the old PTE's bits (migration entries since 6.1). */
export function mkSwapPte(type: number, offset: number, young = false, dirty = false): number {
  assertAbout(type >= 1 && type <= 6, "bad swap type", String, type);
  return swapEntry(type, offset, (young ? _PAGE_ACCESSED : 0) + (dirty ? _PAGE_DIRTY : 0));
}

/**
 * The entry of a known type with its young/dirty bits: what mkSwapPte and the make*Entry helpers
 * share. Small on purpose, so that the JIT inlines it into the loops that make an entry per page.
 */
function swapEntry(type: number, offset: number, bits: number): number {
  assertAbout(isFrame(offset), "swap offset out of range", String, offset);
  return offset * BITS_SCALE + type * SWAP_TYPE_SHIFT_SCALE + bits;
}

/** is_migration_entry. */
export function isMigrationEntry(pte: number): boolean {
  if (!isSwapPte(pte)) return false;
  const type = swapType(pte);
  return type === SWP_MIGRATION_READ || type === SWP_MIGRATION_WRITE || type === SWP_MIGRATION_READ_EXCLUSIVE;
}

/** is_writable_migration_entry. */
export function isWritableMigrationEntry(pte: number): boolean {
  return isSwapPte(pte) && swapType(pte) === SWP_MIGRATION_WRITE;
}

/** is_device_private_entry. */
export function isDevicePrivateEntry(pte: number): boolean {
  if (!isSwapPte(pte)) return false;
  const type = swapType(pte);
  return type === SWP_DEVICE_READ || type === SWP_DEVICE_WRITE;
}

/** is_writable_device_private_entry. */
export function isWritableDevicePrivateEntry(pte: number): boolean {
  return isSwapPte(pte) && swapType(pte) === SWP_DEVICE_WRITE;
}

/** is_device_exclusive_entry. */
export function isDeviceExclusiveEntry(pte: number): boolean {
  return isSwapPte(pte) && swapType(pte) === SWP_DEVICE_EXCLUSIVE;
}

/**
 * is_readable_migration_entry: a migration entry for a page that may be shared (neither writable nor
 * readable-exclusive). remove_migration_pte maps an anonymous page exclusively for every other kind.
 */
export function isReadableMigrationEntry(pte: number): boolean {
  return isSwapPte(pte) && swapType(pte) === SWP_MIGRATION_READ;
}

/** is_readable_exclusive_migration_entry. */
export function isReadableExclusiveMigrationEntry(pte: number): boolean {
  return isSwapPte(pte) && swapType(pte) === SWP_MIGRATION_READ_EXCLUSIVE;
}

/** make_writable_migration_entry or make_readable_migration_entry, with the old PTE's young and dirty bits. */
export function makeMigrationEntry(pfn: number, write: boolean, young = false, dirty = false): number {
  const bits = (young ? _PAGE_ACCESSED : 0) + (dirty ? _PAGE_DIRTY : 0);
  return swapEntry(write ? SWP_MIGRATION_WRITE : SWP_MIGRATION_READ, pfn, bits);
}

/**
 * The migration entry unmapping a page installs (migrate_vma_collect_pmd, try_to_migrate_one): writable
 * when the mapping was, else readable-exclusive when the anonymous page was exclusive to this mapping
 * (folio_try_share_anon_rmap_pte has just cleared PageAnonExclusive; the entry carries it now), else
 * readable. Young and dirty come from the old PTE where the era keeps them.
 */
export function makeUnmapMigrationEntry(
  pfn: number,
  write: boolean,
  exclusive: boolean,
  young: boolean,
  dirty: boolean,
): number {
  const type = write ? SWP_MIGRATION_WRITE : exclusive ? SWP_MIGRATION_READ_EXCLUSIVE : SWP_MIGRATION_READ;
  return swapEntry(type, pfn, (young ? _PAGE_ACCESSED : 0) + (dirty ? _PAGE_DIRTY : 0));
}

/**
 * A migration entry made readable with its young and dirty bits kept, as copy_nonpresent_pte (fork of a
 * COW mapping) and change_pte_range (mprotect) make it: make_readable_migration_entry(swp_offset(entry))
 * keeps the offset, where the kernel stores those bits. `exclusive` gives the readable-exclusive kind.
 */
export function migrationEntryReadOnly(pte: number, exclusive: boolean): number {
  return swapEntry(
    exclusive ? SWP_MIGRATION_READ_EXCLUSIVE : SWP_MIGRATION_READ,
    pteFrame(pte),
    pte & (_PAGE_ACCESSED | _PAGE_DIRTY),
  );
}

/** make_writable_device_private_entry / make_readable_device_private_entry for `pfn`. */
export function makeDevicePrivateEntry(pfn: number, write: boolean): number {
  return swapEntry(write ? SWP_DEVICE_WRITE : SWP_DEVICE_READ, pfn, 0);
}

/**
 * make_device_exclusive_entry: the page's pfn in a device-exclusive entry. Since the 6.15 rework it has
 * no writable kind; restore_exclusive_pte derives write access from the VMA and the page.
 */
export function makeDeviceExclusiveEntry(pfn: number): number {
  return swapEntry(SWP_DEVICE_EXCLUSIVE, pfn, 0);
}

/** Human-readable PTE, for traces and reports. */
export function describePte(pte: number): string {
  if (pte === 0) return "none";
  const frame = pteFrame(pte);
  if (ptePresent(pte)) {
    const bits = [
      pteWrite(pte) ? "W" : "R",
      pteDirty(pte) ? "D" : "",
      pteYoung(pte) ? "A" : "",
      pteSpecial(pte) ? "S" : "",
      pteProtNone(pte) ? "N" : "",
    ].join("");
    return `pfn ${frame} ${bits}`;
  }
  const names = [
    "?",
    "migration-read",
    "migration-write",
    "device-read",
    "device-write",
    "device-exclusive",
    "migration-read-exclusive",
  ];
  return `${names[swapType(pte)] ?? "swap"} ${frame}`;
}

const LEVEL_SPAN_PMD = PTRS_PER_TABLE; // pages under one PMD entry
const LEVEL_SPAN_PUD = PTRS_PER_TABLE * PTRS_PER_TABLE;
const LEVEL_SPAN_PGD = PTRS_PER_TABLE * PTRS_PER_TABLE * PTRS_PER_TABLE;

/** Directory nodes and PTE tables the pools start with. */
const INITIAL_TABLES = 4;

/**
 * The page-table pools. Directory nodes (PGD, PUD, PMD) hold child indices + 1 (0 = none); PTE tables
 * hold PTE words. A PTE table's index is also its split page-table lock's key.
 */
export class PageTables {
  private dirs: Int32Array;
  /**
   * Huge PMD leaves, parallel to `dirs`: non-zero only in PMD-level nodes, at a slot whose `dirs` entry
   * is 0 (no PTE table). A slot's index (node * 512 + slot) is also its PMD lock's key.
   */
  private pmdLeaves: Float64Array;
  /** Huge PMD leaves present, so that walkers of a system without THP skip looking. */
  private leafCount = 0;
  private dirCount = 0;
  private readonly dirFree: number[] = [];
  /** PTE words of every PTE table: table t, slot i is at t * 512 + i. */
  entries: Float64Array;
  private tableCount = 0;
  private readonly tableFree: number[] = [];

  constructor() {
    // Room for a few tables; the pools double as address spaces grow. A small system (the explorer
    // builds thousands a second) never pays for more than it maps.
    this.dirs = new Int32Array(PTRS_PER_TABLE * INITIAL_TABLES);
    this.pmdLeaves = new Float64Array(PTRS_PER_TABLE * INITIAL_TABLES);
    this.entries = new Float64Array(PTRS_PER_TABLE * INITIAL_TABLES);
  }

  /** PTE tables ever allocated (free ones included): entries beyond them are all zero. */
  get tablesAllocated(): number {
    return this.tableCount;
  }

  /** Page-table nodes allocated and not freed. */
  get tablesInUse(): number {
    return this.tableCount - this.tableFree.length;
  }

  /** A new empty PGD: the root of one mm's tables. */
  newRoot(): number {
    return this.allocDir();
  }

  private allocDir(): number {
    const reused = this.dirFree.pop();
    if (reused !== undefined) {
      this.dirs.fill(0, reused * PTRS_PER_TABLE, (reused + 1) * PTRS_PER_TABLE);
      return reused;
    }
    const index = this.dirCount++;
    if (this.dirCount * PTRS_PER_TABLE > this.dirs.length) {
      const grown = new Int32Array(this.dirs.length * 2);
      grown.set(this.dirs);
      this.dirs = grown;
      const leaves = new Float64Array(this.dirs.length);
      leaves.set(this.pmdLeaves);
      this.pmdLeaves = leaves;
    }
    return index;
  }

  private allocTable(): number {
    const reused = this.tableFree.pop();
    if (reused !== undefined) {
      this.entries.fill(0, reused * PTRS_PER_TABLE, (reused + 1) * PTRS_PER_TABLE);
      return reused;
    }
    const index = this.tableCount++;
    if (this.tableCount * PTRS_PER_TABLE > this.entries.length) {
      const grown = new Float64Array(this.entries.length * 2);
      grown.set(this.entries);
      this.entries = grown;
    }
    return index;
  }

  /** pte_offset_map: the PTE table that covers vpn, or -1 when a level above is empty (pmd_none). */
  lookupTable(root: number, vpn: number): number {
    const dirs = this.dirs;
    // Multiplying by the inverse of a power of two is exact (see FRAME_UNIT).
    const pud = dirs[root * PTRS_PER_TABLE + (Math.floor(vpn * (1 / LEVEL_SPAN_PGD)) & 511)]! - 1;
    if (pud < 0) return -1;
    const pmd = dirs[pud * PTRS_PER_TABLE + (Math.floor(vpn * (1 / LEVEL_SPAN_PUD)) & 511)]! - 1;
    if (pmd < 0) return -1;
    return dirs[pmd * PTRS_PER_TABLE + (Math.floor(vpn * (1 / LEVEL_SPAN_PMD)) & 511)]! - 1;
  }

  /** pte_alloc: the PTE table that covers vpn, creating missing levels. The PMD must not be huge. */
  ensureTable(root: number, vpn: number): number {
    const pud = this.ensureChild(root, Math.floor(vpn / LEVEL_SPAN_PGD) & 511, false);
    const pmd = this.ensureChild(pud, Math.floor(vpn / LEVEL_SPAN_PUD) & 511, false);
    const slot = Math.floor(vpn / LEVEL_SPAN_PMD) & 511;
    assert(this.pmdLeaves[pmd * PTRS_PER_TABLE + slot] === 0, "pte_alloc under a huge PMD", () =>
      describePte(this.pmdLeaves[pmd * PTRS_PER_TABLE + slot]!),
    );
    return this.ensureChild(pmd, slot, true);
  }

  /** Huge PMD leaves present in every mm. */
  get hugePmds(): number {
    return this.leafCount;
  }

  /**
   * pmd_offset: the key of the PMD slot that covers vpn (its node * 512 + slot), or -1 when a level
   * above is empty. The key indexes pmdLeaf, and is the PMD's lock key (pmd_lock).
   */
  lookupPmd(root: number, vpn: number): number {
    const dirs = this.dirs;
    const pud = dirs[root * PTRS_PER_TABLE + (Math.floor(vpn * (1 / LEVEL_SPAN_PGD)) & 511)]! - 1;
    if (pud < 0) return -1;
    const pmd = dirs[pud * PTRS_PER_TABLE + (Math.floor(vpn * (1 / LEVEL_SPAN_PUD)) & 511)]! - 1;
    if (pmd < 0) return -1;
    return pmd * PTRS_PER_TABLE + (Math.floor(vpn * (1 / LEVEL_SPAN_PMD)) & 511);
  }

  /** pmd_alloc: the key of the PMD slot that covers vpn, creating the levels above it. */
  ensurePmd(root: number, vpn: number): number {
    const pud = this.ensureChild(root, Math.floor(vpn / LEVEL_SPAN_PGD) & 511, false);
    const pmd = this.ensureChild(pud, Math.floor(vpn / LEVEL_SPAN_PUD) & 511, false);
    return pmd * PTRS_PER_TABLE + (Math.floor(vpn / LEVEL_SPAN_PMD) & 511);
  }

  /** pmd_none at a PMD key: neither a PTE table nor a huge leaf. */
  pmdNone(pmdKey: number): boolean {
    return this.dirs[pmdKey] === 0 && this.pmdLeaves[pmdKey] === 0;
  }

  /** The huge leaf word at a PMD key (a PTE-encoded entry of the folio's head), 0 when none. */
  pmdLeaf(pmdKey: number): number {
    return this.pmdLeaves[pmdKey]!;
  }

  /** The huge leaf covering vpn, 0 when there is none (no table levels, a PTE table, or pmd_none). */
  readPmdLeaf(root: number, vpn: number): number {
    if (this.leafCount === 0) return 0;
    const key = this.lookupPmd(root, vpn);
    return key < 0 ? 0 : this.pmdLeaves[key]!;
  }

  /** set_pmd_at / pmdp_huge_get_and_clear: stores a huge leaf (0 clears it). The slot has no PTE table. */
  setPmdLeaf(pmdKey: number, leaf: number): void {
    assert(this.dirs[pmdKey] === 0, "huge PMD over a PTE table", () => String(pmdKey));
    const old = this.pmdLeaves[pmdKey]!;
    if (old === 0 && leaf !== 0) this.leafCount++;
    else if (old !== 0 && leaf === 0) this.leafCount--;
    this.pmdLeaves[pmdKey] = leaf;
  }

  /**
   * pte_alloc at a PMD key, for split_huge_pmd after its leaf is cleared: the new (empty) PTE table's
   * index.
   */
  tableForPmd(pmdKey: number): number {
    assert(this.pmdLeaves[pmdKey] === 0 && this.dirs[pmdKey] === 0, "PTE table over a mapped PMD", () =>
      String(pmdKey),
    );
    const table = this.allocTable();
    this.dirs[pmdKey] = table + 1;
    return table;
  }

  /** Calls `visit(pmdKey, leaf)` for every huge leaf of every mm, by key (for state fingerprints). */
  forEachHugeLeaf(visit: (pmdKey: number, leaf: number) => void): void {
    if (this.leafCount === 0) return;
    const used = this.dirCount * PTRS_PER_TABLE;
    for (let key = 0; key < used; key++) if (this.pmdLeaves[key] !== 0) visit(key, this.pmdLeaves[key]!);
  }

  /**
   * Calls `visit(pmdKey, firstVpn, leaf)` for every huge leaf under root whose span meets [startVpn,
   * endVpn), in address order. Nothing is visited when no mm has a huge PMD.
   */
  forEachPmdLeaf(
    root: number,
    startVpn: number,
    endVpn: number,
    visit: (pmdKey: number, firstVpn: number, leaf: number) => void,
  ): void {
    if (this.leafCount === 0) return;
    // The tree spans 512^4 pages; past that there is nothing to visit.
    const end = Math.min(endVpn, LEVEL_SPAN_PGD * PTRS_PER_TABLE);
    let vpn = startVpn - (startVpn % LEVEL_SPAN_PMD);
    while (vpn < end) {
      // Read this.dirs afresh: a visit that splits a PMD may grow (reallocate) it.
      const dirs = this.dirs;
      const pud = dirs[root * PTRS_PER_TABLE + (Math.floor(vpn / LEVEL_SPAN_PGD) & 511)]! - 1;
      if (pud < 0) {
        // No PUD table: skip to the next PGD slot.
        vpn = (Math.floor(vpn / LEVEL_SPAN_PGD) + 1) * LEVEL_SPAN_PGD;
        continue;
      }
      const pmd = dirs[pud * PTRS_PER_TABLE + (Math.floor(vpn / LEVEL_SPAN_PUD) & 511)]! - 1;
      if (pmd < 0) {
        // No PMD table: skip to the next PUD slot.
        vpn = (Math.floor(vpn / LEVEL_SPAN_PUD) + 1) * LEVEL_SPAN_PUD;
        continue;
      }
      const key = pmd * PTRS_PER_TABLE + (Math.floor(vpn / LEVEL_SPAN_PMD) & 511);
      const leaf = this.pmdLeaves[key]!;
      if (leaf !== 0) visit(key, vpn, leaf);
      vpn += LEVEL_SPAN_PMD;
    }
  }

  private ensureChild(dir: number, slot: number, leaf: boolean): number {
    const at = dir * PTRS_PER_TABLE + slot;
    const existing = this.dirs[at]! - 1;
    if (existing >= 0) return existing;
    const child = leaf ? this.allocTable() : this.allocDir();
    // allocDir may have grown this.dirs; index again.
    this.dirs[at] = child + 1;
    return child;
  }

  /** Index into `entries` of vpn's PTE within table `table`. */
  static slot(table: number, vpn: number): number {
    return table * PTRS_PER_TABLE + (vpn & 511);
  }

  /**
   * The PTE for vpn, 0 when there is no table. Under a huge PMD, the entry the MMU sees for this 4 KiB
   * page: the leaf's bits with the pfn of the page within the folio.
   */
  read(root: number, vpn: number): number {
    const table = this.lookupTable(root, vpn);
    if (table >= 0) return this.entries[PageTables.slot(table, vpn)]!;
    const leaf = this.readPmdLeaf(root, vpn);
    return leaf === 0 ? 0 : leaf + (vpn % LEVEL_SPAN_PMD) * BITS_SCALE;
  }

  /**
   * Calls `visit(table, firstVpn)` for every PTE table under root, in address order; used by exit and
   * by the invariant checker.
   */
  forEachTable(root: number, visit: (table: number, firstVpn: number) => void): void {
    const dirs = this.dirs;
    for (let g = 0; g < PTRS_PER_TABLE; g++) {
      const pud = dirs[root * PTRS_PER_TABLE + g]! - 1;
      if (pud < 0) continue;
      for (let u = 0; u < PTRS_PER_TABLE; u++) {
        const pmd = dirs[pud * PTRS_PER_TABLE + u]! - 1;
        if (pmd < 0) continue;
        for (let m = 0; m < PTRS_PER_TABLE; m++) {
          const table = dirs[pmd * PTRS_PER_TABLE + m]! - 1;
          if (table >= 0) visit(table, g * LEVEL_SPAN_PGD + u * LEVEL_SPAN_PUD + m * LEVEL_SPAN_PMD);
        }
      }
    }
  }

  /**
   * free_pte_range for the PMD slot that covers vpn: frees its PTE table, whose entries must all be
   * none, and clears the slot (pmd_clear), so a later fault there finds pmd_none. Nothing when no table
   * is there.
   */
  freePteTableAt(root: number, vpn: number): void {
    const pmdKey = this.lookupPmd(root, vpn);
    if (pmdKey < 0) return;
    const table = this.dirs[pmdKey]! - 1;
    if (table < 0) return;
    const base = table * PTRS_PER_TABLE;
    for (let i = 0; i < PTRS_PER_TABLE; i++) {
      assert(this.entries[base + i] === 0, "freeing a page table that still maps", () =>
        describePte(this.entries[base + i]!),
      );
    }
    this.dirs[pmdKey] = 0;
    this.tableFree.push(table);
  }

  /** Frees every node under root and root itself (free_pgtables at exit). All PTEs must be none. */
  freeRoot(root: number): void {
    const dirs = this.dirs;
    for (let g = 0; g < PTRS_PER_TABLE; g++) {
      const pud = dirs[root * PTRS_PER_TABLE + g]! - 1;
      if (pud < 0) continue;
      for (let u = 0; u < PTRS_PER_TABLE; u++) {
        const pmd = dirs[pud * PTRS_PER_TABLE + u]! - 1;
        if (pmd < 0) continue;
        for (let m = 0; m < PTRS_PER_TABLE; m++) {
          assert(
            this.pmdLeaves[pmd * PTRS_PER_TABLE + m] === 0,
            "freeing a page table that still maps a huge PMD",
            () => describePte(this.pmdLeaves[pmd * PTRS_PER_TABLE + m]!),
          );
          const table = dirs[pmd * PTRS_PER_TABLE + m]! - 1;
          if (table < 0) continue;
          for (let i = 0; i < PTRS_PER_TABLE; i++) {
            assert(
              this.entries[table * PTRS_PER_TABLE + i] === 0,
              "freeing a page table that still maps",
              () => describePte(this.entries[table * PTRS_PER_TABLE + i]!),
            );
          }
          this.tableFree.push(table);
        }
        this.dirFree.push(pmd);
      }
      this.dirFree.push(pud);
    }
    this.dirFree.push(root);
  }
}
