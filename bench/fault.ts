/**
 * Write-faulting 1 GiB of private anonymous memory: every page takes do_anonymous_page (allocation,
 * zeroing, rmap, LRU batch, PTE). The tokens store measures the model's own cost per fault; the bytes
 * store adds zeroing and filling 4 KiB of real memory per page.
 */
import { System } from "../src/system.js";
import { type BenchResult, compared, progress, round } from "./result.js";

const PAGE_SIZE = 4096;
const BYTES = 2 ** 30;

/**
 * Faults per second of one fillPages over a fresh 1 GiB mapping in a fresh System. With `reuseFrames`,
 * an earlier mapping is filled and unmapped first (not timed), so the timed faults get frames whose host
 * memory is already touched: the model's cost without the host's own first-touch page faults.
 */
export function faultRate(store: "bytes" | "tokens", reuseFrames = false): number {
  const system = new System({ ram: "2GiB", store });
  const process = system.spawn();
  const npages = BYTES / PAGE_SIZE;
  if (reuseFrames) {
    const earlier = process.mmap(BYTES);
    process.fillPages(earlier, npages, 3);
    process.munmap(earlier, BYTES);
  }
  const addr = process.mmap(BYTES);
  const faultsBefore = system.kernel.stats.faults;
  const t0 = performance.now();
  process.fillPages(addr, npages, 7);
  const seconds = (performance.now() - t0) / 1000;
  const faults = system.kernel.stats.faults - faultsBefore;
  if (faults !== npages) throw new Error(`expected ${npages} faults, counted ${faults}`);
  if (process.checkPages(addr, 1, 7).length !== 0) throw new Error("fillPages left wrong contents");
  return faults / seconds;
}

export function benchFaults(memcpyPagesPerSecond: number): BenchResult[] {
  progress("faults: write-faulting 1 GiB of anonymous memory, tokens store");
  const tokens = faultRate("tokens");
  progress("faults: the same, tokens store again (JIT warm, for comparison)");
  const tokensWarm = faultRate("tokens");
  progress("faults: write-faulting 1 GiB of anonymous memory, bytes store");
  const bytes = faultRate("bytes");
  progress("faults: bytes store again, on frames whose host memory an earlier mapping touched");
  const bytesReused = faultRate("bytes", true);
  return [
    compared("write faults, 1 GiB anon, tokens store (target >= 2e6)", tokens, "faults/s", 2e6),
    {
      name: "write faults, 1 GiB anon, tokens store, second run (JIT warm)",
      value: round(tokensWarm),
      unit: "faults/s",
    },
    compared(
      "write faults, 1 GiB anon, bytes store, fresh host memory (vs memcpy pages/s)",
      bytes,
      "faults/s",
      memcpyPagesPerSecond,
    ),
    compared(
      "write faults, 1 GiB anon, bytes store, reused frames (vs memcpy pages/s)",
      bytesReused,
      "faults/s",
      memcpyPagesPerSecond,
    ),
  ];
}
