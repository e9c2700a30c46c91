/**
 * Run in its own node process by populate.ts, so that the peak RSS it reports is this benchmark's
 * alone: populates 64 GiB (16M pages) of one process in the tokens store and prints one JSON line.
 */
import { System } from "../src/system.js";

const PAGE_SIZE = 4096;
const GIB = 2 ** 30;
const bytes = Number(process.argv[2] ?? 64) * GIB;
const npages = bytes / PAGE_SIZE;
const system = new System({ ram: `${bytes / GIB + 2}GiB`, store: "tokens" });
const proc = system.spawn();
const addr = proc.mmap(bytes);
let rssPeak = process.memoryUsage().rss;
const chunkPages = 2 ** 18; // 1 GiB per call, sampling RSS between calls
const t0 = performance.now();
for (let done = 0; done < npages; done += chunkPages) {
  proc.touch(addr + done * PAGE_SIZE, Math.min(chunkPages, npages - done), true);
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
}
const seconds = (performance.now() - t0) / 1000;
if (system.kernel.ram.usedPages < npages) throw new Error(`only ${system.kernel.ram.usedPages} pages in use`);
process.stdout.write(
  `${JSON.stringify({
    pages: npages,
    seconds,
    pagesPerSecond: npages / seconds,
    rssPeakSampledBytes: rssPeak,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  })}\n`,
);
