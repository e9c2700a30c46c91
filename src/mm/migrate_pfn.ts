/**
 * Migrate PFN words and the switches that tell one protocol version from another
 * (include/linux/migrate.h in each era). A migrate PFN is `pfn << SHIFT | flags`; hmmsim computes it
 * as `pfn * 2^SHIFT + flags` in a double, since pfns can exceed 32 bits after the shift.
 */
import type { ProtocolVersion } from "./kernel.js";

/** Flag values of one era; a flag that did not exist then is 0. */
export interface MigratePfnLayout {
  readonly VALID: number;
  readonly MIGRATE: number;
  readonly LOCKED: number;
  readonly WRITE: number;
  readonly DEVICE: number;
  readonly ERROR: number;
  readonly COMPOUND: number;
  readonly SHIFT: number;
  /** 2 ** SHIFT, the multiplier of the pfn. */
  readonly SCALE: number;
  /** 2 ** -SHIFT: decoding multiplies by it, which is exact and cheaper than dividing by SCALE. */
  readonly SCALE_INVERSE: number;
}

/** The seed (June 2017): VALID 0, MIGRATE 1, LOCKED 2, WRITE 3, ERROR 4, SHIFT 5. */
export const SEED_LAYOUT: MigratePfnLayout = {
  VALID: 1,
  MIGRATE: 2,
  LOCKED: 4,
  WRITE: 8,
  DEVICE: 0,
  ERROR: 16,
  COMPOUND: 0,
  SHIFT: 5,
  SCALE: 32,
  SCALE_INVERSE: 1 / 32,
};
/** 4.14 to 5.3 (a5430dda8a3a added DEVICE at bit 4, moving ERROR to 5 and SHIFT to 6). */
export const V414_LAYOUT: MigratePfnLayout = {
  VALID: 1,
  MIGRATE: 2,
  LOCKED: 4,
  WRITE: 8,
  DEVICE: 16,
  ERROR: 32,
  COMPOUND: 0,
  SHIFT: 6,
  SCALE: 64,
  SCALE_INVERSE: 1 / 64,
};
/** Today: LOCKED gone (5.16), DEVICE and ERROR gone (5.4), COMPOUND at bit 4 (device THP); SHIFT 6. */
export const MODERN_LAYOUT: MigratePfnLayout = {
  VALID: 1,
  MIGRATE: 2,
  LOCKED: 0,
  WRITE: 8,
  DEVICE: 0,
  ERROR: 0,
  COMPOUND: 16,
  SHIFT: 6,
  SCALE: 64,
  SCALE_INVERSE: 1 / 64,
};

/** enum migrate_vma_direction (modern). */
export const MIGRATE_VMA_SELECT_SYSTEM = 1;
/**
 * MIGRATE_VMA_SELECT_DEVICE_PRIVATE: migrate_vma_setup collects device-private pages of the caller's pgmap
 * owner.
 */
export const MIGRATE_VMA_SELECT_DEVICE_PRIVATE = 2;
/**
 * MIGRATE_VMA_SELECT_DEVICE_COHERENT: migrate_vma_setup collects device-coherent pages of the caller's pgmap
 * owner.
 */
export const MIGRATE_VMA_SELECT_DEVICE_COHERENT = 4;

/** The bit layout of migrate_pfn words (MIGRATE_PFN_* values and shift) in a protocol version. */
export function layoutFor(protocol: ProtocolVersion): MigratePfnLayout {
  return protocol === "seed" ? SEED_LAYOUT : protocol === "4.14" ? V414_LAYOUT : MODERN_LAYOUT;
}

/** migrate_pfn: pfn with VALID. */
export function migratePfn(layout: MigratePfnLayout, pfn: number): number {
  return pfn * layout.SCALE + layout.VALID;
}

/** migrate_pfn_to_page: the pfn, or -1 when VALID is clear. */
export function migratePfnToPfn(layout: MigratePfnLayout, mpfn: number): number {
  if ((mpfn & layout.VALID) === 0) return -1;
  return Math.floor(mpfn * layout.SCALE_INVERSE);
}

/** Whether a migrate_pfn word has `flag` set (a flag of 0, absent from this layout, is never set). */
export function hasFlag(mpfn: number, flag: number): boolean {
  return flag !== 0 && (mpfn & flag) !== 0;
}

/** Clears `flag` in a word (bitwise ops only see the low 32 bits, so subtract instead). */
export function clearFlag(mpfn: number, flag: number): number {
  return hasFlag(mpfn, flag) ? mpfn - flag : mpfn;
}

/** Sets `flag` in a migrate_pfn word (by addition, since words pass 32 bits); a flag of 0 changes nothing. */
export function setFlag(mpfn: number, flag: number): number {
  return flag === 0 || hasFlag(mpfn, flag) ? mpfn : mpfn + flag;
}

/**
 * The behaviour of each protocol version, as named switches. Each names the kernel change that
 * flipped it. The core in migrate_device.ts reads only these.
 */
export interface MigrateSwitches {
  readonly protocol: ProtocolVersion;
  /** 8c3328f1f36a (4.14): collect trylocks each page and installs its migration entry under the PTL. */
  readonly unmapWhileCollecting: boolean;
  /** a5430dda8a3a (4.14): device-private entries are collected, so pages come back from a device. */
  readonly collectDevicePrivate: boolean;
  /** 4.14 "allow migrate_vma() to alloc new page on empty entry": holes, pte_none and the zero page give MIGRATE without a page. */
  readonly allocOnEmpty: boolean;
  /** 5.9: empty entries are selected only in anonymous VMAs. */
  readonly emptyOnlyInAnonymous: boolean;
  /** a5430dda8a3a (4.14): prepare drops collect's reference once isolation holds one. The seed does not. */
  readonly dropCollectRefAfterIsolate: boolean;
  /** HMM-v25 (4.14): prepare trylocks; the seed's blocking lock_page lets two migrations deadlock (S3). */
  readonly prepareTrylock: boolean;
  /** Which invalidation brackets collect: none in the seed (S2), CLEAR in 4.14, MIGRATE with owner today. */
  readonly collectNotifier: "none" | "clear" | "migrate";
  /** fd35ca3d12cc (6.0): the PTE's dirty bit moves to the page when collect clears it (S12). */
  readonly collectCopiesDirty: boolean;
  /**
   * 60bae7370896 (6.0, "mm/migrate_device.c: flush TLB while holding PTL"): collect flushes the TLB for
   * the PTEs it unmapped before dropping the PTE lock. Before it (4.14 to 5.19) the flush came after
   * pte_unmap_unlock, and a MADV_DONTNEED or munmap in between could return while another CPU still
   * wrote to the page through its TLB (S12).
   */
  readonly collectFlushUnderPtl: boolean;
  /** 2018 "properly preserve write attribute": the entry's write bit comes from the mpfn, not pte_write of a swap PTE. */
  readonly writeFromMpfn: boolean;
  /** ab09243aa95a (5.16): only pages collect could lock are collected, prepare and unmap are one step. */
  readonly collectOnlyLocked: boolean;
  /** 41cddf83d8b0 (2025): finalize adds only dst to the LRU and puts src, never putting a page to be freed on the LRU (S11). */
  readonly finalizeLruOnlyDst: boolean;
  /** a5430dda8a3a (4.14): ZONE_DEVICE pages are put, not putback_lru_page'd (S10 in the seed). */
  readonly zoneDeviceAwarePutback: boolean;
  /** 16ce101db85d (6.1): the fault page's extra reference is expected in the pin check and in move_mapping. */
  readonly faultPageExtraRef: boolean;
  /** Modern collect selects by MIGRATE_VMA_SELECT_* flags and pgmap owner. */
  readonly selectByFlags: boolean;
  /** Modern collect skips an exclusive anonymous page that may be pinned (folio_try_share_anon_rmap_pte). */
  readonly skipMaybePinnedExclusive: boolean;
}

/** The migrate_vma behaviour switches of a protocol version. */
export function switchesFor(protocol: ProtocolVersion): MigrateSwitches {
  const seed = protocol === "seed";
  const modern = protocol === "modern";
  return {
    protocol,
    unmapWhileCollecting: !seed,
    collectDevicePrivate: !seed,
    allocOnEmpty: !seed,
    emptyOnlyInAnonymous: modern,
    dropCollectRefAfterIsolate: !seed,
    prepareTrylock: !seed,
    collectNotifier: seed ? "none" : modern ? "migrate" : "clear",
    collectCopiesDirty: modern,
    collectFlushUnderPtl: modern,
    writeFromMpfn: modern,
    collectOnlyLocked: modern,
    finalizeLruOnlyDst: modern,
    zoneDeviceAwarePutback: !seed,
    faultPageExtraRef: modern,
    selectByFlags: modern,
    skipMaybePinnedExclusive: modern,
  };
}
