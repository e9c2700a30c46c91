/**
 * The memcpy baseline: TypedArray.set copying 1 GiB in 4 KiB chunks from one 1 GiB buffer to another,
 * the operation the bytes store uses for every page copy, over as much memory as a 1 GiB migration
 * touches (copies within a smaller buffer run from cache far more and would flatter the baseline).
 */
import { type BenchResult, compared, progress, round } from "./result.js";

const PAGE_SIZE = 4096;
const TOTAL_BYTES = 2 ** 30;

export interface MemcpyBaseline {
  results: BenchResult[];
  pagesPerSecond: number;
}

export function benchMemcpy(): MemcpyBaseline {
  const src = new Uint8Array(TOTAL_BYTES);
  const dst = new Uint8Array(TOTAL_BYTES);
  // Touch both buffers once so that the measurement copies memory, not first-touch page faults of the
  // host (which the simulated page faults of the bytes store do pay, and report separately).
  for (let i = 0; i < TOTAL_BYTES; i += PAGE_SIZE) src[i] = i / PAGE_SIZE;
  dst.fill(1);
  const chunks = TOTAL_BYTES / PAGE_SIZE;
  progress(`memcpy: copying ${TOTAL_BYTES / 2 ** 30} GiB in 4 KiB chunks`);
  // The median of three passes, as the migration benchmark reports the median of its warm runs.
  const passes: number[] = [];
  for (let pass = 0; pass < 3; pass++) {
    const t0 = performance.now();
    for (let c = 0; c < chunks; c++) {
      const at = c * PAGE_SIZE;
      dst.set(src.subarray(at, at + PAGE_SIZE), at);
    }
    passes.push((performance.now() - t0) / 1000);
  }
  const seconds = passes.sort((a, b) => a - b)[1]!;
  if (dst[PAGE_SIZE] !== src[PAGE_SIZE]) throw new Error("memcpy baseline copied nothing");
  // The same copy with the destination pages taken from the top down: what a last-freed-first
  // allocator gives a migration, and why both of hmmsim's allocators hand out the lowest frame first.
  const descending: number[] = [];
  for (let pass = 0; pass < 3; pass++) {
    const t0 = performance.now();
    for (let c = 0; c < chunks; c++) {
      const at = c * PAGE_SIZE;
      dst.set(src.subarray(at, at + PAGE_SIZE), TOTAL_BYTES - PAGE_SIZE - at);
    }
    descending.push((performance.now() - t0) / 1000);
  }
  const descendingSeconds = descending.sort((a, b) => a - b)[1]!;
  const pagesPerSecond = TOTAL_BYTES / PAGE_SIZE / seconds;
  return {
    pagesPerSecond,
    results: [
      {
        name: "memcpy 1 GiB in 4 KiB chunks (TypedArray.set)",
        value: round(TOTAL_BYTES / seconds / 1e9),
        unit: "GB/s",
      },
      { name: "memcpy 4 KiB pages", value: round(pagesPerSecond), unit: "pages/s" },
      compared(
        "memcpy 1 GiB in 4 KiB chunks, destination pages descending (vs ascending)",
        TOTAL_BYTES / descendingSeconds / 1e9,
        "GB/s",
        TOTAL_BYTES / seconds / 1e9,
      ),
    ],
  };
}
