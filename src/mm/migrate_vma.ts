/**
 * The seed's API: migrate_vma(ops, vma, start, end, src, dst, private) with its two driver callbacks
 * (include/linux/migrate.h and mm/migrate.c of the June 2017 patch, then of 4.14). Under "seed" and
 * "4.14" it runs that era's steps; under "modern" it is a thin layer over migrate_vma_setup, _pages and
 * _finalize (migrate_device.ts), the way drivers converted when the API was turned upside down in 5.4.
 */
import { EINVAL } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import type { Kfn } from "../sched/thread.js";
import {
  type MigrateContext,
  type MigrateVma,
  type MigrateVmaArgs,
  migrateVmaCollect,
  migrateVmaFinalize,
  migrateVmaFinalizeCore,
  migrateVmaPages,
  migrateVmaPagesCore,
  migrateVmaPrepare,
  migrateVmaSetup,
  migrateVmaUnmap,
} from "./migrate_device.js";
import { MIGRATE_VMA_SELECT_DEVICE_PRIVATE, MIGRATE_VMA_SELECT_SYSTEM } from "./migrate_pfn.js";
import { VM_HUGETLB, VM_SPECIAL, type Vma } from "./mm_types.js";

/**
 * struct migrate_vma_ops. Both callbacks get byte addresses. alloc_and_copy must lock every page it
 * puts in dst and must not change src; finalize_and_map must change neither array.
 */
export interface MigrateVmaOps<P> {
  /**
   * alloc_and_copy (struct migrate_vma_ops, 4.14): allocate destination pages for the collected sources and
   * copy them.
   */
  allocAndCopy(
    vma: Vma,
    src: Float64Array,
    dst: Float64Array,
    start: number,
    end: number,
    priv: P,
  ): Kfn<void>;
  /** finalize_and_map (struct migrate_vma_ops, 4.14): after the pages moved, update the device's mappings. */
  finalizeAndMap(
    vma: Vma,
    src: Float64Array,
    dst: Float64Array,
    start: number,
    end: number,
    priv: P,
  ): Kfn<void>;
  /**
   * hmmsim extension for the modern layer, which must name what to select: the pgmap owner and the
   * MIGRATE_VMA_SELECT_* flags (default: system and device-private pages of this owner).
   */
  readonly pgmapOwner?: unknown;
  readonly selectFlags?: number;
}

/**
 * migrate_vma: returns -EINVAL for bad arguments, else 0, even when nothing moved. `start` and `end`
 * are byte addresses masked to pages; src and dst need (end - start) / PAGE_SIZE entries.
 */
export function* migrateVma<P>(
  ctx: MigrateContext,
  ops: MigrateVmaOps<P> | null,
  vma: Vma | null,
  startAddr: number,
  endAddr: number,
  src: Float64Array | null,
  dst: Float64Array | null,
  priv: P,
): Kfn<number> {
  const start = Math.floor(startAddr / PAGE_SIZE);
  const end = Math.floor(endAddr / PAGE_SIZE);
  if (vma === null || (vma.flags & VM_HUGETLB) !== 0 || (vma.flags & VM_SPECIAL) !== 0) return -EINVAL;
  if (start < vma.start || start >= vma.end) return -EINVAL;
  if (end <= vma.start || end > vma.end) return -EINVAL;
  if (ops === null || src === null || dst === null || start >= end) return -EINVAL;
  if (src.length < end - start || dst.length < end - start) return -EINVAL;
  const startBytes = start * PAGE_SIZE;
  const endBytes = end * PAGE_SIZE;
  if (ctx.migrate.protocol === "modern") {
    const args: MigrateVmaArgs = {
      vma,
      start: startBytes,
      end: endBytes,
      src,
      dst,
      pgmapOwner: ops.pgmapOwner ?? null,
      flags: ops.selectFlags ?? MIGRATE_VMA_SELECT_SYSTEM | MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
    };
    const ret = yield* migrateVmaSetup(ctx, args);
    if (ret !== 0) return ret;
    // Drivers on the modern API finish the protocol even when nothing was collected, so that
    // finalize releases what setup left; with cpages 0 it finds nothing to do.
    yield* ops.allocAndCopy(vma, src, dst, startBytes, endBytes, priv);
    yield* migrateVmaPages(ctx, args);
    yield* ops.finalizeAndMap(vma, src, dst, startBytes, endBytes, priv);
    yield* migrateVmaFinalize(ctx, args);
    return 0;
  }
  src.fill(0, 0, end - start);
  const m: MigrateVma = {
    vma,
    src,
    dst,
    cpages: 0,
    npages: 0,
    start,
    end,
    pgmapOwner: null,
    flags: 0,
    faultPage: -1,
  };
  // Collect, and try to unmap source pages.
  yield* migrateVmaCollect(ctx, m);
  if (m.cpages === 0) return 0;
  // Lock and isolate pages.
  yield* migrateVmaPrepare(ctx, m);
  if (m.cpages === 0) return 0;
  // Unmap pages.
  yield* migrateVmaUnmap(ctx, m);
  if (m.cpages === 0) return 0;
  // Pages are locked and unmapped: their contents are stable and the driver copies them.
  yield* ops.allocAndCopy(vma, src, dst, startBytes, endBytes, priv);
  yield* migrateVmaPagesCore(ctx, m);
  yield* ops.finalizeAndMap(vma, src, dst, startBytes, endBytes, priv);
  yield* migrateVmaFinalizeCore(ctx, m.src, m.dst, m.npages, -1);
  return 0;
}
