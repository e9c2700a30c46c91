/**
 * Looking at hmmsim's state without changing it: what a page of a process holds now (through its page
 * table, the page cache or the zero page, as the CPU would find it, but without faulting), the
 * comparison of every process's pages and every file with the reference, and a signature of
 * everything a failed call must leave as it was (VMAs, every PTE, device and file state, pins).
 */

import { type MmStruct, VM_HUGEPAGE, VM_NOHUGEPAGE } from "../../../src/mm/mm_types.js";
import { ZERO_PFN } from "../../../src/mm/page_alloc.js";
import {
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  pteFrame,
  ptePresent,
} from "../../../src/mm/pgtable.js";
import type { System } from "../../../src/system.js";
import { contents, firstWord, hex, PAGE, pastEnd, type RefPage } from "./pages.js";
import type { RefProcess, World } from "./world.js";

/**
 * The frame the CPU would find at vpn (present, device-private, device-exclusive or migrating), or -1:
 * none.
 */
export function frameAt(system: System, mm: MmStruct, vpn: number): number {
  const k = system.kernel;
  const pte = k.pt.read(mm.root, vpn);
  if (
    pte !== 0 &&
    (ptePresent(pte) || isDevicePrivateEntry(pte) || isDeviceExclusiveEntry(pte) || isMigrationEntry(pte))
  )
    return pteFrame(pte);
  const vma = mm.findVma(vpn);
  if (vma?.file != null) return vma.file.pages.get(vma.linearIndex(vpn)) ?? -1;
  return -1;
}

const scratch = new Uint8Array(PAGE);

/** True when the frame (or, for -1, an untouched page: zeros) holds `want`. */
export function frameHolds(system: System, pfn: number, want: Uint8Array): boolean {
  const store = system.kernel.store;
  if (store.kind === "tokens") return (pfn < 0 || pfn === ZERO_PFN ? 0 : store.word(pfn)) === firstWord(want);
  if (pfn < 0) return want.every((byte) => byte === 0);
  store.readBytes(pfn, 0, scratch, 0, PAGE);
  return Buffer.from(scratch.buffer).equals(Buffer.from(want.buffer, want.byteOffset, PAGE));
}

function describeFrame(system: System, pfn: number): string {
  if (pfn < 0) return "no page (zeros)";
  const store = system.kernel.store;
  return `pfn ${pfn} whose first word is 0x${store.word(pfn).toString(16)}`;
}

/** The first difference between one process's pages and the reference, or null. */
export function comparePages(
  system: System,
  rp: RefProcess,
  only?: (vpn: number, page: RefPage) => boolean,
): string | null {
  const mm = rp.process.mm;
  for (const [vpn, page] of rp.pages) {
    if (only !== undefined && !only(vpn, page)) continue;
    // A device-file page has its PTE from mmap on, until MADV_DONTNEED zaps it for good: which of the
    // two, hmmsim's page table must say (zeros either way, so the bytes would not tell).
    if (page.driver && (system.kernel.pt.read(mm.root, vpn) === 0) !== (page.gone === true))
      return `pid ${rp.process.pid} ${hex(vpn)} (device-file mapping): ${page.gone ? "mapped, the reference zapped it" : "zapped, the reference maps it"}`;
    if (pastEnd(page)) continue;
    const vma = mm.findVma(vpn);
    if (vma === null)
      return `pid ${rp.process.pid} ${hex(vpn)}: the reference maps it (${page.kind}), hmmsim has no VMA there`;
    const want = contents(page);
    const pfn = frameAt(system, mm, vpn);
    if (!frameHolds(system, pfn, want))
      return `pid ${rp.process.pid} ${hex(vpn)} (${page.kind}): holds ${describeFrame(system, pfn)}, the reference's first word is 0x${firstWord(want).toString(16)}`;
  }
  return null;
}

/**
 * hmmsim's VMAs against the reference: the same pages mapped, each VMA one of the reference's (the same
 * boundaries: a VMA is a maximal run of one reference identity), with its protection and its
 * VM_HUGEPAGE / VM_NOHUGEPAGE flag.
 */
export function compareVmas(rp: RefProcess): string | null {
  const mm = rp.process.mm;
  let mappedPages = 0;
  for (const vma of mm.vmas) {
    const id = rp.pages.get(vma.start)?.vma;
    for (const outside of [vma.start - 1, vma.end as number]) {
      if (id !== undefined && rp.pages.get(outside)?.vma === id)
        return `pid ${rp.process.pid}: hmmsim's VMA ${vma} ends at ${hex(outside)}, the reference's runs on`;
    }
    for (let vpn = vma.start as number; vpn < vma.end; vpn++) {
      const page = rp.pages.get(vpn);
      if (page === undefined)
        return `pid ${rp.process.pid} ${hex(vpn)}: hmmsim maps it (${vma}), the reference does not`;
      if (page.vma !== id)
        return `pid ${rp.process.pid} ${hex(vpn)}: one VMA in hmmsim (${vma}), two in the reference`;
      if ((vma.flags & 7) !== page.prot)
        return `pid ${rp.process.pid} ${hex(vpn)}: hmmsim's protection ${vma.flags & 7}, the reference's ${page.prot}`;
      const thp =
        (vma.flags & VM_HUGEPAGE) !== 0 ? "huge" : (vma.flags & VM_NOHUGEPAGE) !== 0 ? "nohuge" : undefined;
      if (thp !== page.thp)
        return `pid ${rp.process.pid} ${hex(vpn)}: hmmsim's VMA is ${thp ?? "neither"} (VM_HUGEPAGE/VM_NOHUGEPAGE), the reference's ${page.thp ?? "neither"}`;
      mappedPages++;
    }
  }
  if (mappedPages !== rp.pages.size)
    return `pid ${rp.process.pid}: hmmsim maps ${mappedPages} pages, the reference ${rp.pages.size}`;
  return null;
}

/** The files' page caches against the reference's objects. */
export function compareFiles(system: System, world: World): string | null {
  for (const rf of world.files) {
    const space = rf.file.space;
    if (space.sizeBytes !== rf.sizeBytes)
      return `file ${rf.file.name}: size ${space.sizeBytes}, the reference says ${rf.sizeBytes}`;
    const pgoffs = new Set([...space.pages.keys(), ...rf.object.pages.keys()]);
    for (const pgoff of pgoffs) {
      const want = rf.object.pages.get(pgoff) ?? new Uint8Array(PAGE);
      if (!frameHolds(system, space.pages.get(pgoff) ?? -1, want))
        return `file ${rf.file.name} page ${pgoff}: the page cache's first word differs from the reference's 0x${firstWord(want).toString(16)}`;
    }
  }
  return null;
}

/** The first difference between hmmsim and the whole reference, or null. */
export function compareWorld(system: System, world: World): string | null {
  for (const rp of world.processes) {
    if (!rp.alive) {
      if (!rp.process.exited) return `pid ${rp.process.pid}: the reference says it exited, hmmsim does not`;
      continue;
    }
    const mismatch = compareVmas(rp) ?? comparePages(system, rp);
    if (mismatch !== null) return mismatch;
  }
  return compareFiles(system, world);
}

/**
 * Everything a call that fails its argument checks must leave as it was: each live process's VMAs and
 * every PTE in them (accessed and dirty bits included), pages in use, each device's pages and each
 * open file's flags, the pins, and every file's size and cached pages.
 */
export function signature(system: System, world: World): string {
  const k = system.kernel;
  const parts: string[] = [`ram ${k.ram.usedPages}`];
  for (const rp of world.processes) {
    if (!rp.alive || rp.process.exited) continue;
    const mm = rp.process.mm;
    for (const vma of mm.vmas) {
      parts.push(
        `${rp.process.pid}:${vma.start}-${vma.end}/${vma.flags}/${vma.pgoff}/${vma.file?.id ?? "-"}`,
      );
      for (let vpn = vma.start as number; vpn < vma.end; vpn++)
        parts.push(`pte@${hex(vpn)}=${k.pt.read(mm.root, vpn)}`);
    }
  }
  for (const device of system.devices) parts.push(`dev ${device.minor} ${device.usedPages}`);
  for (const rf of world.fds) {
    const mirror = rf.fd.mirror;
    parts.push(
      `fd ${rf.fd.process.pid}:${rf.fd.fd} ${rf.fd.closed} ${mirror.id} ${mirror.closed} ${mirror.flags}`,
    );
    mirror.pt.forEach((vpn, entry) => {
      parts.push(`dpt ${mirror.id}@${vpn}=${entry}`);
    });
  }
  for (const [pfn, count] of system.gup.pins) parts.push(`pin ${pfn}x${count}`);
  for (const rf of world.files)
    parts.push(`file ${rf.file.space.sizeBytes} ${[...rf.file.space.pages.keys()].join(",")}`);
  return parts.join(" ");
}
