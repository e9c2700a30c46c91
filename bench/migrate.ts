/**
 * migrate_vma of 1 GiB of 4 KiB pages from system memory to device 0, through the dmirror
 * MIGRATE_TO_DEV command (the modern three-phase API), timed around the migration only.
 */
import { PAGE_SIZE } from "../src/base/units.js";
import type { StoreKind } from "../src/mm/page_store.js";
import { System } from "../src/system.js";

export interface MigrateMeasurement {
  pages: number;
  seconds: number;
  pagesPerSecond: number;
  bytesPerSecond: number;
  dataIntact: boolean;
}

export function measureMigrateToDevice(store: StoreKind, bytes = 2 ** 30): MigrateMeasurement {
  const pages = bytes / PAGE_SIZE;
  const system = new System({ ram: bytes + 256 * 2 ** 20, store, devices: [{ memory: bytes }] });
  const process = system.spawn();
  const addr = process.mmap(bytes);
  process.fillPages(addr, pages, 1);
  const file = system.device(0).open(process);
  const began = performance.now();
  const result = file.migrateToDevice(addr, pages);
  const seconds = (performance.now() - began) / 1000;
  const words = file.read(addr, Math.min(pages, 1024)).words;
  let intact = result.cpages === pages;
  for (let i = 0; i < words.length && intact; i++) intact = words[i] !== 0;
  return {
    pages,
    seconds,
    pagesPerSecond: pages / seconds,
    bytesPerSecond: bytes / seconds,
    dataIntact: intact,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const store of ["tokens", "bytes"] as const) {
    const m = measureMigrateToDevice(store);
    process.stdout.write(
      `${store}: ${m.pages} pages in ${m.seconds.toFixed(3)} s = ${(m.pagesPerSecond / 1e6).toFixed(2)} M pages/s, ${(m.bytesPerSecond / 1e9).toFixed(2)} GB/s, intact ${m.dataIntact}\n`,
    );
  }
}
