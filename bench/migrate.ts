/**
 * migrate_vma of 1 GiB of 4 KiB pages from system memory to device 0, through the dmirror
 * MIGRATE_TO_DEV command (the modern three-phase API), timed around the migration only.
 */
import { PAGE_SIZE } from "../src/base/units.js";
import type { StoreKind } from "../src/mm/page_store.js";
import { System } from "../src/system.js";
import { type BenchResult, compared, progress, round } from "./result.js";

export interface MigrateMeasurement {
  pages: number;
  /** The first migration, into device frames the host has never touched. */
  coldSeconds: number;
  /** The median of WARM_RUNS migrations after a round trip, into device frames that exist in host memory. */
  seconds: number;
  pagesPerSecond: number;
  bytesPerSecond: number;
  dataIntact: boolean;
}

/** Warm migrations timed; the median is reported, so one descheduling of this VM does not decide it. */
const WARM_RUNS = 5;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Times MIGRATE_TO_DEV of `bytes`: once cold (the host's first touch of the store's device frames is
 * part of it), then WARM_RUNS times after MIGRATE_TO_SYS brought everything back, so that the host
 * memory behind the device frames exists, as real device memory does. The warm median is the model's
 * own cost.
 */
export function measureMigrateToDevice(store: StoreKind, bytes = 2 ** 30): MigrateMeasurement {
  const pages = bytes / PAGE_SIZE;
  const system = new System({ ram: bytes + 256 * 2 ** 20, store, devices: [{ memory: bytes }] });
  const process = system.spawn();
  const addr = process.mmap(bytes);
  process.fillPages(addr, pages, 1);
  const file = system.device(0).open(process);
  let began = performance.now();
  let moved = file.migrateToDevice(addr, pages).cpages === pages;
  const coldSeconds = (performance.now() - began) / 1000;
  const warm: number[] = [];
  for (let run = 0; run < WARM_RUNS; run++) {
    moved &&= file.migrateToSystem(addr, pages).cpages === pages;
    began = performance.now();
    moved &&= file.migrateToDevice(addr, pages).cpages === pages;
    warm.push((performance.now() - began) / 1000);
  }
  const seconds = median(warm);
  return {
    pages,
    coldSeconds,
    seconds,
    pagesPerSecond: pages / seconds,
    bytesPerSecond: bytes / seconds,
    dataIntact: moved && process.checkPages(addr, pages, 1).length === 0,
  };
}

/**
 * The migration results: bytes store as a ratio of the memcpy baseline's bytes per second (target 0.5),
 * tokens store in pages per second against the 5 million per second target.
 */
export function benchMigrate(memcpyBytesPerSecond: number): BenchResult[] {
  progress("migrate_vma 1 GiB to device, tokens store");
  const tokens = measureMigrateToDevice("tokens");
  progress("migrate_vma 1 GiB to device, bytes store");
  const bytes = measureMigrateToDevice("bytes");
  if (!tokens.dataIntact || !bytes.dataIntact) throw new Error("migration benchmark read back wrong data");
  return [
    compared(
      "migrate_vma 1 GiB system to device, bytes store (vs memcpy)",
      bytes.bytesPerSecond / 1e9,
      "GB/s",
      memcpyBytesPerSecond / 1e9,
    ),
    compared(
      "migrate_vma 1 GiB system to device, tokens store (vs 5M target)",
      tokens.pagesPerSecond,
      "pages/s",
      5e6,
    ),
    {
      name: "migrate_vma 1 GiB system to device, bytes store, untouched device frames",
      value: round(bytes.pages / bytes.coldSeconds),
      unit: "pages/s",
    },
    {
      name: "migrate_vma 1 GiB system to device, tokens store, first migration",
      value: round(tokens.pages / tokens.coldSeconds),
      unit: "pages/s",
    },
  ];
}
