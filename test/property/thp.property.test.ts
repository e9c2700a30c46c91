/**
 * Random sequences of operations over transparent huge pages, checked against a plain reference: four
 * 2 MiB-aligned slots of private anonymous memory (MADV_HUGEPAGE, or transparent_hugepage "always"),
 * whose pages the reference keeps as one 32-bit value each (0: never written, the zero page). The
 * operations cut and keep huge PMDs every way the model splits, zaps, moves or changes one: writes
 * (the first makes a THP), reads of a huge zero PMD, munmap and re-mmap, mprotect, MADV_DONTNEED,
 * MADV_FREE, mremap of a whole slot or half of one, fork with a child that writes and exits, migration
 * to a device and back, and dmirror READ; each on whole slots, halves, or a few pages at a slot's edge.
 * After every step every mapped byte must be the reference's, and `checkInvariants()` must be empty.
 *
 * The same sequences run over hugetlbfs slots (MAP_HUGETLB) too, where the reference expects EINVAL for
 * what would cut a huge page (a partial munmap or mprotect), for MADV_DONTNEED and MADV_FREE, mremap and
 * migration, and the same bytes for everything else (fork's copy-on-write at 2 MiB included).
 *
 * Unlike the surface property (surface.property.test.ts, small mappings of a few pages, where no THP
 * forms), this one is about the huge-page paths; it runs the bytes store (every word checked).
 * HMMSIM_THP_RUNS sets the number of sequences (default 60), HMMSIM_THP_SEED replays one.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EINVAL, KernelError } from "../../src/base/errno.js";
import { HMM_DMIRROR_PROT_PMD } from "../../src/drivers/dmirror_uapi.js";
import { MAP_HUGETLB } from "../../src/mm/mman.js";
import {
  MADV_DONTNEED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/mmap.js";
import { HPAGE_PMD_NR } from "../../src/mm/page.js";
import type { Process } from "../../src/process.js";
import { System } from "../../src/system.js";

const PAGE = 4096;
const SLOT_PAGES = HPAGE_PMD_NR;
const SLOTS = 4;
/** A 2 MiB-aligned base with room for the slots. */
const BASE_VPN = 0x10_0000_0000 / PAGE;
const RUNS = Number(process.env.HMMSIM_THP_RUNS ?? 60);
const SEED = process.env.HMMSIM_THP_SEED === undefined ? undefined : Number(process.env.HMMSIM_THP_SEED);

/** A range of pages in slot coordinates: whole slot, one half, or a few pages at an edge or inside. */
type Span = { slot: number; shape: "whole" | "low" | "high" | "edge" | "few"; first: number; pages: number };

type Op =
  | { op: "write"; span: Span; seed: number }
  | { op: "read"; span: Span }
  | { op: "munmap"; span: Span }
  | { op: "remap"; slot: number }
  | { op: "mprotect"; span: Span; writable: boolean }
  | { op: "dontneed"; span: Span }
  | { op: "free"; span: Span }
  | { op: "mremap"; from: number; to: number; half: boolean }
  | { op: "fork"; span: Span; seed: number }
  | { op: "toDevice"; span: Span }
  | { op: "toSystem"; span: Span }
  | { op: "deviceRead"; span: Span };

const span: fc.Arbitrary<Span> = fc
  .record({
    slot: fc.nat({ max: SLOTS - 1 }),
    shape: fc.constantFrom("whole", "whole", "low", "high", "edge", "few"),
    offset: fc.nat({ max: SLOT_PAGES - 1 }),
    count: fc.integer({ min: 1, max: 8 }),
  })
  .map(({ slot, shape, offset, count }) => {
    switch (shape) {
      case "whole":
        return { slot, shape, first: 0, pages: SLOT_PAGES };
      case "low":
        return { slot, shape, first: 0, pages: SLOT_PAGES / 2 };
      case "high":
        return { slot, shape, first: SLOT_PAGES / 2, pages: SLOT_PAGES / 2 };
      case "edge":
        return { slot, shape, first: SLOT_PAGES - count, pages: count };
      default:
        return { slot, shape, first: Math.min(offset, SLOT_PAGES - count), pages: count };
    }
  });

const seed = fc.integer({ min: 1, max: 0xffff });
const slot = fc.nat({ max: SLOTS - 1 });

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("write" as const), span, seed }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("read" as const), span }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("munmap" as const), span }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("remap" as const), slot }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("mprotect" as const), span, writable: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("dontneed" as const), span }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("free" as const), span }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("mremap" as const), from: slot, to: slot, half: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("fork" as const), span, seed }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("toDevice" as const), span }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("toSystem" as const), span }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("deviceRead" as const), span }) },
);

/** The reference: per page, mapped or not, writable or not, and the value every word holds. */
class Reference {
  readonly mapped = new Uint8Array(SLOTS * SLOT_PAGES);
  readonly writable = new Uint8Array(SLOTS * SLOT_PAGES);
  readonly values = new Uint32Array(SLOTS * SLOT_PAGES);

  constructor() {
    this.mapped.fill(1);
    this.writable.fill(1);
  }

  all(first: number, pages: number, of: Uint8Array): boolean {
    for (let i = first; i < first + pages; i++) if (of[i] === 0) return false;
    return true;
  }

  /** The bytes of pages [first, first + pages): every 32-bit word holds the page's value. */
  bytes(first: number, pages: number): Uint8Array {
    const words = new Uint32Array(pages * (PAGE / 4));
    for (let i = 0; i < pages; i++) words.fill(this.values[first + i]!, i * (PAGE / 4), (i + 1) * (PAGE / 4));
    return new Uint8Array(words.buffer);
  }
}

function addrOf(page: number): number {
  return (BASE_VPN + page) * PAGE;
}

function firstPage(s: Span): number {
  return s.slot * SLOT_PAGES + s.first;
}

/** What fillPages(addr, n, seed) stores in page i: the value of src/process.ts's pageValue. */
function pageValue(seedValue: number, index: number): number {
  let x = (Math.imul(seedValue ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x27d4eb2f) >>> 0;
  return (x ^ (x >>> 13)) >>> 0 || 1;
}

function sameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (Buffer.compare(actual, expected) === 0) return;
  const at = actual.findIndex((byte, i) => byte !== expected[i]);
  throw new Error(`${what}: byte 0x${at.toString(16)} (page ${Math.floor(at / PAGE)}) differs`);
}

/** Every mapped page of proc reads back as the reference says, in runs of mapped pages. */
function checkAll(proc: Process, ref: Reference, what: string): void {
  let page = 0;
  while (page < ref.mapped.length) {
    if (ref.mapped[page] === 0) {
      page++;
      continue;
    }
    let end = page;
    while (end < ref.mapped.length && ref.mapped[end] === 1) end++;
    sameBytes(proc.read(addrOf(page), (end - page) * PAGE), ref.bytes(page, end - page), what);
    page = end;
  }
}

type Backing = "madvise" | "always" | "hugetlb";

interface Run {
  system: System;
  proc: Process;
  ref: Reference;
  backing: Backing;
}

/** The flags of the slots' mappings. */
function mapFlags(backing: Backing): number {
  return MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (backing === "hugetlb" ? MAP_HUGETLB : 0);
}

function start(backing: Backing, protocol: "modern" | "4.14"): Run {
  const system = new System({
    ram: "40MiB",
    store: "bytes",
    protocol,
    thp: { enabled: backing === "always" ? "always" : "madvise" },
    devices: [{ memory: "8MiB" }],
    // The slots, a re-mmap's new folio before the old goes, and a child's copies.
    hugepages: backing === "hugetlb" ? SLOTS + 3 : 0,
  });
  const proc = system.spawn();
  proc.mmap(SLOTS * SLOT_PAGES * PAGE, { addr: addrOf(0), flags: mapFlags(backing) });
  if (backing === "madvise") proc.madvise(addrOf(0), SLOTS * SLOT_PAGES * PAGE, MADV_HUGEPAGE);
  return { system, proc, ref: new Reference(), backing };
}

/** Runs a call the reference says a hugetlb VMA refuses: EINVAL, and nothing changes. */
function refused(call: () => unknown): true {
  let errno = 0;
  try {
    call();
  } catch (error) {
    if (!(error instanceof KernelError)) throw error;
    errno = error.errno;
  }
  expect(errno, "EINVAL from a hugetlb VMA").toBe(EINVAL);
  return true;
}

/** Applies one operation to the system and the reference; false when it does not apply now. */
function apply(run: Run, o: Op): boolean {
  const { system, proc, ref } = run;
  const hugetlb = run.backing === "hugetlb";
  switch (o.op) {
    case "write": {
      const first = firstPage(o.span);
      if (!ref.all(first, o.span.pages, ref.mapped) || !ref.all(first, o.span.pages, ref.writable))
        return false;
      proc.fillPages(addrOf(first), o.span.pages, o.seed);
      for (let i = 0; i < o.span.pages; i++) ref.values[first + i] = pageValue(o.seed, i);
      return true;
    }
    case "read": {
      const first = firstPage(o.span);
      if (!ref.all(first, o.span.pages, ref.mapped)) return false;
      sameBytes(proc.read(addrOf(first), o.span.pages * PAGE), ref.bytes(first, o.span.pages), "read");
      return true;
    }
    case "munmap": {
      const first = firstPage(o.span);
      if (hugetlb && o.span.pages !== SLOT_PAGES && ref.all(first, o.span.pages, ref.mapped))
        return refused(() => proc.munmap(addrOf(first), o.span.pages * PAGE));
      if (hugetlb && o.span.pages !== SLOT_PAGES) return false;
      proc.munmap(addrOf(first), o.span.pages * PAGE);
      ref.mapped.fill(0, first, first + o.span.pages);
      ref.values.fill(0, first, first + o.span.pages);
      return true;
    }
    case "remap": {
      const first = o.slot * SLOT_PAGES;
      proc.mmap(SLOT_PAGES * PAGE, { addr: addrOf(first), flags: mapFlags(run.backing) });
      if (run.backing === "madvise") proc.madvise(addrOf(first), SLOT_PAGES * PAGE, MADV_HUGEPAGE);
      ref.mapped.fill(1, first, first + SLOT_PAGES);
      ref.writable.fill(1, first, first + SLOT_PAGES);
      ref.values.fill(0, first, first + SLOT_PAGES);
      return true;
    }
    case "mprotect": {
      const first = firstPage(o.span);
      if (!ref.all(first, o.span.pages, ref.mapped)) return false;
      const prot = o.writable ? PROT_READ | PROT_WRITE : PROT_READ;
      const changes = ref.writable
        .subarray(first, first + o.span.pages)
        .some((w) => w !== (o.writable ? 1 : 0));
      // A split inside a huge page is refused; a call that changes no VMA splits none.
      if (hugetlb && o.span.pages !== SLOT_PAGES && changes)
        return refused(() => proc.mprotect(addrOf(first), o.span.pages * PAGE, prot));
      proc.mprotect(addrOf(first), o.span.pages * PAGE, prot);
      ref.writable.fill(o.writable ? 1 : 0, first, first + o.span.pages);
      return true;
    }
    case "dontneed":
    case "free": {
      const first = firstPage(o.span);
      if (!ref.all(first, o.span.pages, ref.mapped)) return false;
      const advice = o.op === "dontneed" ? MADV_DONTNEED : MADV_FREE;
      if (hugetlb) return refused(() => proc.madvise(addrOf(first), o.span.pages * PAGE, advice));
      proc.madvise(addrOf(first), o.span.pages * PAGE, advice);
      // MADV_FREE keeps the data: hmmsim never reclaims a lazily freed page.
      if (o.op === "dontneed") ref.values.fill(0, first, first + o.span.pages);
      return true;
    }
    case "mremap": {
      if (o.from === o.to) return false;
      const pages = o.half ? SLOT_PAGES / 2 : SLOT_PAGES;
      const from = o.from * SLOT_PAGES;
      const to = o.to * SLOT_PAGES;
      // One VMA must hold the source (mremap fails with EFAULT across VMAs): ask the model's VMAs.
      const vma = proc.mm.findVma(BASE_VPN + from);
      if (vma === null || vma.end < BASE_VPN + from + pages) return false;
      if (hugetlb)
        return refused(() =>
          proc.mremap(addrOf(from), pages * PAGE, pages * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, addrOf(to)),
        );
      proc.munmap(addrOf(to), SLOT_PAGES * PAGE);
      ref.mapped.fill(0, to, to + SLOT_PAGES);
      ref.values.fill(0, to, to + SLOT_PAGES);
      const got = proc.mremap(
        addrOf(from),
        pages * PAGE,
        pages * PAGE,
        MREMAP_MAYMOVE | MREMAP_FIXED,
        addrOf(to),
      );
      expect(got).toBe(addrOf(to));
      ref.values.copyWithin(to, from, from + pages);
      ref.mapped.copyWithin(to, from, from + pages);
      ref.writable.copyWithin(to, from, from + pages);
      ref.mapped.fill(0, from, from + pages);
      ref.values.fill(0, from, from + pages);
      return true;
    }
    case "fork": {
      const first = firstPage(o.span);
      const child = proc.fork();
      const childRef = new Reference();
      childRef.mapped.set(ref.mapped);
      childRef.writable.set(ref.writable);
      childRef.values.set(ref.values);
      if (ref.all(first, o.span.pages, ref.mapped) && ref.all(first, o.span.pages, ref.writable)) {
        child.fillPages(addrOf(first), o.span.pages, o.seed);
        for (let i = 0; i < o.span.pages; i++) childRef.values[first + i] = pageValue(o.seed, i);
      }
      checkAll(child, childRef, "the child");
      expect(system.checkInvariants()).toEqual([]);
      child.exit();
      return true;
    }
    case "toDevice":
    case "toSystem":
    case "deviceRead": {
      const first = firstPage(o.span);
      if (!ref.all(first, o.span.pages, ref.mapped)) return false;
      const fd = system.device(0).open(proc);
      if (hugetlb && o.op !== "deviceRead") {
        // migrate_vma_setup: EINVAL for a hugetlb VMA.
        refused(() =>
          o.op === "toDevice"
            ? fd.migrateToDevice(addrOf(first), o.span.pages)
            : fd.migrateToSystem(addrOf(first), o.span.pages),
        );
      } else if (o.op === "toDevice") {
        // Pages may stay behind (a zero-page read-back, a full device): the bytes are what is judged.
        try {
          fd.migrateToDevice(addrOf(first), o.span.pages);
        } catch {
          // ENOENT (a page not mirrored) or ENOMEM: the migration itself is not judged here.
        }
      } else if (o.op === "toSystem") {
        fd.migrateToSystem(addrOf(first), o.span.pages);
      } else {
        const into = new Uint8Array(o.span.pages * PAGE);
        fd.read(addrOf(first), o.span.pages, into);
        sameBytes(into, ref.bytes(first, o.span.pages), "dmirror READ");
        // A page still PMD-mapped shows HMM_DMIRROR_PROT_PMD in a snapshot; one the device holds does not.
        const codes = fd.snapshot(addrOf(first), 1);
        const leaf = system.kernel.pt.readPmdLeaf(proc.mm.root, BASE_VPN + first);
        expect((codes[0]! & HMM_DMIRROR_PROT_PMD) !== 0).toBe(leaf !== 0);
      }
      fd.close();
      return true;
    }
  }
}

describe("THP operation sequences keep every byte and every invariant", () => {
  it("random sequences over four 2 MiB slots (THP by madvise or always, hugetlbfs; modern and 4.14)", () => {
    let thpsMade = 0;
    let splits = 0;
    fc.assert(
      fc.property(
        fc.constantFrom("madvise" as const, "always" as const, "hugetlb" as const),
        fc.constantFrom("modern" as const, "4.14" as const),
        fc.array(op, { minLength: 1, maxLength: 24 }),
        (backing, protocol, ops) => {
          const run = start(backing, protocol);
          const done: string[] = [];
          for (const o of ops) {
            if (!apply(run, o)) continue;
            done.push(JSON.stringify(o));
            checkAll(run.proc, run.ref, `after ${done.length} steps (${done.at(-1)})`);
            const report = run.system.checkInvariants();
            if (report.length > 0) throw new Error(`after ${done.at(-1)}: ${report.join("; ")}`);
          }
          thpsMade += run.system.kernel.stats.thpFaultAlloc;
          splits += run.system.kernel.stats.thpSplitPmd;
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
    // The sequences reach the huge-page paths at all: THPs were made (about 0.6 a sequence) and split.
    expect(thpsMade).toBeGreaterThan(RUNS / 4);
    expect(splits).toBeGreaterThan(0);
  });
});
