/**
 * hmm-tests' benchmark_thp_migration in hmmsim form: MIGRATE_TO_DEV and MIGRATE_TO_SYS of 2 MiB to
 * 256 MiB of a 2 MiB-aligned buffer, with THP (MADV_HUGEPAGE: the buffer is written into THPs) and
 * without (MADV_NOHUGEPAGE), in both stores. Each configuration runs 3 times or more (up to 32 for the
 * small sizes) on a fresh mapping, so that every timed migration to the device starts from THPs, as
 * the kernel test's fresh buffers do; the median is reported, after one warm-up pass of every path. The bytes store's throughput is compared with memcpy of the same size in
 * 2 MiB chunks measured here, and the tokens store's pages per second with THP against those without.
 *
 * hmmsim has no device-private THP yet: a THP is split by migrate_vma_collect and moved as 512 pages,
 * and comes back as 4 KiB pages, so "with THP" measures the split on top of the 4 KiB migration.
 */
import { PAGE_SIZE } from "../src/base/units.js";
import { MADV_HUGEPAGE, MADV_NOHUGEPAGE } from "../src/mm/mmap.js";
import type { StoreKind } from "../src/mm/page_store.js";
import { System } from "../src/system.js";
import { type BenchResult, compared, progress, round } from "./result.js";

const MIB = 2 ** 20;
const SIZES_MIB = [2, 8, 32, 128, 256] as const;
/** Runs of a configuration: at least 3, more for small sizes (up to 64 MiB migrated per configuration). */
function runsFor(bytes: number): number {
  return Math.max(3, Math.min(32, Math.round((64 * MIB) / bytes)));
}
const RUNS = 3;
const HUGE = 2 * MIB;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** TypedArray.set of `bytes` in 2 MiB chunks between two buffers of that size; seconds, median of RUNS. */
function memcpySeconds(bytes: number): number {
  const src = new Uint8Array(bytes).fill(7);
  const dst = new Uint8Array(bytes).fill(1);
  const times: number[] = [];
  // A small copy is timed over enough repetitions to be measurable.
  const repeat = Math.max(1, Math.round((64 * MIB) / bytes));
  for (let run = 0; run < RUNS; run++) {
    const began = performance.now();
    for (let r = 0; r < repeat; r++)
      for (let at = 0; at < bytes; at += HUGE) dst.set(src.subarray(at, at + HUGE), at);
    times.push((performance.now() - began) / 1000 / repeat);
  }
  if (dst[bytes - 1] !== 7) throw new Error("memcpy baseline copied nothing");
  return median(times);
}

interface ThpMeasurement {
  toDeviceSeconds: number;
  toSystemSeconds: number;
}

/** One configuration: RUNS fresh mappings, each written, migrated to the device and back, timed. */
function measure(store: StoreKind, bytes: number, thp: boolean): ThpMeasurement {
  const pages = bytes / PAGE_SIZE;
  const toDevice: number[] = [];
  const toSystem: number[] = [];
  const system = new System({ ram: 2 * bytes + 64 * MIB, store, devices: [{ memory: bytes }] });
  const process = system.spawn();
  const file = system.device(0).open(process);
  for (let run = 0; run < runsFor(bytes); run++) {
    const mapped = process.mmap(bytes + HUGE);
    const addr = Math.ceil(mapped / HUGE) * HUGE;
    process.madvise(addr, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    process.fillPages(addr, pages, run + 1);
    const huge = system.kernel.pt.hugePmds;
    if (thp !== huge >= bytes / HUGE) throw new Error(`the buffer has ${huge} THPs, thp ${thp}`);
    let began = performance.now();
    const there = file.migrateToDevice(addr, pages).cpages;
    toDevice.push((performance.now() - began) / 1000);
    began = performance.now();
    const back = file.migrateToSystem(addr, pages).cpages;
    toSystem.push((performance.now() - began) / 1000);
    if (there !== pages || back !== pages || process.checkPages(addr, pages, run + 1).length !== 0)
      throw new Error(`THP migration benchmark: ${store} ${bytes} bytes thp ${thp} lost data`);
    process.munmap(mapped, bytes + HUGE);
  }
  file.close();
  return { toDeviceSeconds: median(toDevice), toSystemSeconds: median(toSystem) };
}

export function benchThpMigration(): BenchResult[] {
  const results: BenchResult[] = [];
  // Warm the JIT on every path once, so that the first configuration measured is not the slow one.
  for (const store of ["bytes", "tokens"] as const)
    for (const thp of [true, false]) measure(store, 8 * MIB, thp);
  for (const sizeMib of SIZES_MIB) {
    const bytes = sizeMib * MIB;
    const pages = bytes / PAGE_SIZE;
    progress(`benchmark_thp_migration ${sizeMib} MiB`);
    const memcpy = bytes / memcpySeconds(bytes) / 1e9;
    results.push({ name: `memcpy ${sizeMib} MiB in 2 MiB chunks`, value: round(memcpy), unit: "GB/s" });
    for (const direction of ["toDevice", "toSystem"] as const) {
      const label = direction === "toDevice" ? "MIGRATE_TO_DEV" : "MIGRATE_TO_SYS";
      const seconds = (m: ThpMeasurement) =>
        direction === "toDevice" ? m.toDeviceSeconds : m.toSystemSeconds;
      for (const thp of [true, false]) {
        const m = measure("bytes", bytes, thp);
        results.push(
          compared(
            `${label} ${sizeMib} MiB ${thp ? "THP" : "4 KiB"}, bytes store (vs memcpy)`,
            bytes / seconds(m) / 1e9,
            "GB/s",
            memcpy,
          ),
        );
      }
      const withThp = measure("tokens", bytes, true);
      const without = measure("tokens", bytes, false);
      results.push(
        compared(
          `${label} ${sizeMib} MiB THP, tokens store (vs 4 KiB)`,
          pages / seconds(withThp),
          "pages/s",
          pages / seconds(without),
        ),
      );
    }
  }
  return results;
}
