/**
 * Random sequences of memory-management system calls and CPU accesses over a few processes, checked
 * against a plain reference model: each process is a Map from page number to the page's protection, the
 * VMA it belongs to and where its bytes live (its own copy, or a shared object: a tmpfs file or a shared
 * anonymous mapping). Every read must return the reference's bytes, every call the reference says fails
 * must throw the errno it predicts (changing nothing), and after every step the system's invariant
 * checker must report nothing.
 *
 * Semantics the reference encodes (Linux, with hmmsim's documented differences: VMAs never merge, so a
 * split made by mprotect or munmap stays a boundary for mremap):
 * - fork copies private memory (copy-on-write) and shares MAP_SHARED memory;
 * - private anonymous memory reads zeros until written; MADV_DONTNEED zeroes it again, while shared pages
 *   keep their contents and a private file page goes back to showing the file;
 * - a private file page shows the file (including later writes through shared mappings and pwrite) until
 *   the process writes it, after which it has its own copy;
 * - mremap moves contents; munmap of unmapped ranges succeeds; MAP_FIXED replaces what it overlaps,
 *   MAP_FIXED_NOREPLACE fails with EEXIST; mprotect over a hole fails with ENOMEM after changing the
 *   VMAs before the hole (do_mprotect_pkey's walk) and leaves VMAs whose protection does not change
 *   unsplit; mremap of an unmapped old address fails with EFAULT, a shrink may cross VMAs, and a
 *   MREMAP_FIXED move of the same size moves every VMA in the range (remap_move); reading PROT_NONE
 *   or unmapped memory and writing read-only memory raise SIGSEGV.
 *
 * Accesses past the end of a file or of a shared anonymous object (possible after mremap grows a shared
 * mapping) raise SIGBUS in Linux; the model does not check the file size there, so the test skips them.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KernelError } from "../../src/base/errno.js";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/mmap.js";
import { type Process, SignalError } from "../../src/process.js";
import { System, type TmpFile } from "../../src/system.js";
import {
  anyMapped,
  contents,
  fullyMapped,
  hex,
  Identities,
  isolate,
  type Kind,
  movePages,
  PAGE,
  type PageMap,
  pastEnd,
  pattern,
  protect,
  type RefPage,
  type SharedObject,
  unmap,
  vmaAt,
  writable,
} from "./surface/pages.js";

/** Where MAP_FIXED lands when a process has nothing mapped: 4 GiB, above mmap_min_addr. */
const ARENA_VPN = 2 ** 20;
const FILE_PAGES = 64;
const PROCESSES_MAX = 3;

// ---------------------------------------------------------------------------------------------------
// The reference model (the page maps of test/property/surface/pages.ts)
// ---------------------------------------------------------------------------------------------------

interface RefProcess {
  process: Process;
  pages: PageMap;
}

class Reference {
  readonly processes: RefProcess[] = [];
  readonly file: SharedObject = { name: "file", pages: new Map(), sizePages: FILE_PAGES };
  private readonly ids = new Identities();

  newVmaId(): number {
    return this.ids.newVmaId();
  }

  newObject(sizePages: number): SharedObject {
    return this.ids.newObject(sizePages);
  }

  static contents = contents;
  static writable = writable;
  static pastEnd = pastEnd;

  isolate(ref: RefProcess, start: number, end: number): void {
    isolate(this.ids, ref.pages, start, end);
  }

  /** mprotect_fixup over [start, end), all mapped (surface/pages.ts protect). */
  protect(ref: RefProcess, start: number, end: number, prot: number): void {
    protect(this.ids, ref.pages, start, end, prot);
  }

  unmap(ref: RefProcess, start: number, end: number): void {
    unmap(this.ids, ref.pages, start, end);
  }

  move(ref: RefProcess, oldStart: number, moved: number, newStart: number, newPages: number): void {
    movePages(this.ids, ref.pages, oldStart, moved, newStart, newPages);
  }

  static vmaAt(ref: RefProcess, vpn: number): { start: number; end: number; id: number } | null {
    return vmaAt(ref.pages, vpn);
  }

  static anyMapped(ref: RefProcess, start: number, end: number): boolean {
    return anyMapped(ref.pages, start, end);
  }

  static fullyMapped(ref: RefProcess, start: number, end: number): boolean {
    return fullyMapped(ref.pages, start, end);
  }
}

// ---------------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------------

/** An address relative to what is mapped: a mapped page chosen by `anchor`, moved by `delta` pages. */
interface Where {
  anchor: number;
  delta: number;
  /** Byte offset in the page (reads, writes, unaligned system-call addresses). */
  offset: number;
}

type Op =
  | {
      op: "mmap";
      p: number;
      kind: Kind;
      prot: number;
      place: "any" | "fixed" | "noreplace";
      at: Where;
      pages: number;
      fileOffset: number;
      unaligned: boolean;
    }
  | { op: "munmap"; p: number; at: Where; pages: number; unaligned: boolean }
  | { op: "mprotect"; p: number; at: Where; pages: number; prot: number; unaligned: boolean }
  | {
      op: "mremap";
      p: number;
      at: Where;
      oldPages: number;
      newPages: number;
      flags: number;
      to: Where;
      unaligned: boolean;
    }
  | { op: "madvise"; p: number; at: Where; pages: number; unaligned: boolean }
  | { op: "fork"; p: number }
  | { op: "exit"; p: number }
  | { op: "write"; p: number; at: Where; length: number; seed: number }
  | { op: "read"; p: number; at: Where; length: number }
  | { op: "pwrite"; offset: number; length: number; seed: number }
  | { op: "pread"; offset: number; length: number };

const where = fc.record({
  anchor: fc.nat({ max: 1000 }),
  // Mostly on a mapped page, sometimes just beside or past one.
  delta: fc.oneof(
    { weight: 6, arbitrary: fc.constant(0) },
    { weight: 2, arbitrary: fc.integer({ min: -2, max: 2 }) },
    { weight: 1, arbitrary: fc.integer({ min: -4, max: 8 }) },
  ),
  offset: fc.oneof(
    fc.constant(0),
    fc.integer({ min: 0, max: 64 }),
    fc.integer({ min: PAGE - 64, max: PAGE - 1 }),
  ),
});
const proc = fc.nat({ max: 99 });
/** True about one time in ten: unaligned addresses for EINVAL. */
const rare = fc.oneof(
  { weight: 1, arbitrary: fc.constant(true) },
  { weight: 9, arbitrary: fc.constant(false) },
);
// x86 lets a CPU read PROT_WRITE-only and PROT_EXEC-only memory; those prots are left out here.
const prot = fc.constantFrom(PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC);
const kind = fc.constantFrom<Kind>("anonPrivate", "anonPrivate", "anonShared", "filePrivate", "fileShared");

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("mmap" as const),
      p: proc,
      kind,
      prot: fc.oneof(
        { weight: 3, arbitrary: fc.constant(PROT_READ | PROT_WRITE) },
        { weight: 1, arbitrary: prot },
      ),
      place: fc.constantFrom("any" as const, "fixed" as const, "noreplace" as const),
      at: where,
      pages: fc.oneof(
        { weight: 1, arbitrary: fc.constant(0) },
        { weight: 12, arbitrary: fc.integer({ min: 1, max: 6 }) },
      ),
      fileOffset: fc.nat({ max: 12 }),
      unaligned: rare,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("munmap" as const),
      p: proc,
      at: where,
      pages: fc.oneof(
        { weight: 1, arbitrary: fc.constant(0) },
        { weight: 8, arbitrary: fc.integer({ min: 1, max: 6 }) },
      ),
      unaligned: rare,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("mprotect" as const),
      p: proc,
      at: where,
      pages: fc.integer({ min: 0, max: 6 }),
      prot,
      unaligned: rare,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("mremap" as const),
      p: proc,
      at: where,
      oldPages: fc.integer({ min: 1, max: 5 }),
      newPages: fc.integer({ min: 1, max: 8 }),
      flags: fc.constantFrom(0, MREMAP_MAYMOVE, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED),
      to: where,
      unaligned: rare,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("madvise" as const),
      p: proc,
      at: where,
      pages: fc.integer({ min: 0, max: 6 }),
      unaligned: rare,
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("fork" as const), p: proc }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("exit" as const), p: proc }) },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      p: proc,
      at: where,
      length: fc.integer({ min: 1, max: 128 }),
      seed: fc.nat({ max: 255 }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("read" as const),
      p: proc,
      at: where,
      length: fc.integer({ min: 1, max: 128 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("pwrite" as const),
      offset: fc.nat({ max: 16 * PAGE }),
      length: fc.integer({ min: 1, max: 200 }),
      seed: fc.nat({ max: 255 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("pread" as const),
      offset: fc.nat({ max: 16 * PAGE }),
      length: fc.integer({ min: 1, max: 200 }),
    }),
  },
);

// ---------------------------------------------------------------------------------------------------
// Running a sequence against the system and the reference
// ---------------------------------------------------------------------------------------------------

function describeError(error: unknown): string {
  if (error instanceof SignalError) return `${error.signal} (${error.message})`;
  if (error instanceof KernelError) return `${error.code} (${error.message})`;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Runs `call`, which must throw KernelError `code` (or SignalError `signal`). */
function expectFailure(what: string, expected: string, call: () => unknown): string {
  let thrown: unknown = null;
  let returned: unknown;
  try {
    returned = call();
  } catch (error) {
    thrown = error;
  }
  if (thrown === null) throw new Error(`${what}: expected ${expected}, but it returned ${String(returned)}`);
  const got =
    thrown instanceof SignalError ? thrown.signal : thrown instanceof KernelError ? thrown.code : null;
  if (got !== expected) throw new Error(`${what}: expected ${expected}, got ${describeError(thrown)}`);
  return expected;
}

class Run {
  readonly system = new System({ ram: "16MiB", store: "bytes" });
  readonly file: TmpFile;
  readonly ref = new Reference();

  constructor() {
    this.file = this.system.createFile("file", FILE_PAGES * PAGE);
    this.ref.processes.push({ process: this.system.spawn(), pages: new Map() });
  }

  private pick(p: number): RefProcess {
    return this.ref.processes[p % this.ref.processes.length]!;
  }

  /** The page a Where names in this process. */
  private resolve(rp: RefProcess, at: Where): number {
    const vpns = [...rp.pages.keys()].sort((a, b) => a - b);
    const base = vpns.length === 0 ? ARENA_VPN : vpns[at.anchor % vpns.length]!;
    return base + at.delta;
  }

  /**
   * With `at.delta` 0 (an address on a mapped page), a range length is cut to the mapped run (or VMA)
   * it starts in, so that most calls succeed; other deltas keep the length and probe holes and edges.
   */
  private fit(rp: RefProcess, at: Where, start: number, pages: number, withinVma: boolean): number {
    if (at.delta !== 0 || pages === 0) return pages;
    let run = 0;
    const vma = rp.pages.get(start)?.vma;
    while (run < pages && rp.pages.has(start + run) && (!withinVma || rp.pages.get(start + run)!.vma === vma))
      run++;
    return Math.max(run, 1);
  }

  private addPages(
    rp: RefProcess,
    start: number,
    pages: number,
    template: Omit<RefPage, "vma" | "own">,
  ): void {
    const vma = this.ref.newVmaId();
    for (let i = 0; i < pages; i++) {
      rp.pages.set(start + i, { ...template, pgoff: template.pgoff + i, vma, own: null });
    }
  }

  step(op: Op, index: number): string {
    const what = `step ${index} ${op.op}`;
    switch (op.op) {
      case "mmap":
        return this.mmap(op, what);
      case "munmap": {
        const rp = this.pick(op.p);
        const start = this.resolve(rp, op.at);
        const addr = start * PAGE + (op.unaligned ? 512 : 0);
        if (op.unaligned || op.pages === 0) {
          return expectFailure(what, "EINVAL", () => rp.process.munmap(addr, op.pages * PAGE));
        }
        rp.process.munmap(addr, op.pages * PAGE);
        this.ref.unmap(rp, start, start + op.pages);
        return "ok";
      }
      case "mprotect": {
        const rp = this.pick(op.p);
        const start = this.resolve(rp, op.at);
        const pages = this.fit(rp, op.at, start, op.pages, false);
        const end = start + pages;
        const addr = start * PAGE + (op.unaligned ? 512 : 0);
        const call = () => rp.process.mprotect(addr, pages * PAGE, op.prot);
        if (op.unaligned) return expectFailure(what, "EINVAL", call);
        if (pages === 0) {
          call();
          return "ok";
        }
        // The walk changes the VMAs up to the first hole, then reports it with ENOMEM.
        let mappedEnd = start;
        while (mappedEnd < end && rp.pages.has(mappedEnd)) mappedEnd++;
        const hole = mappedEnd < end;
        if (hole) expectFailure(what, "ENOMEM", call);
        else call();
        this.ref.protect(rp, start, mappedEnd, op.prot);
        return hole ? "ENOMEM" : "ok";
      }
      case "mremap":
        return this.mremap(op, what);
      case "madvise": {
        const rp = this.pick(op.p);
        const start = this.resolve(rp, op.at);
        const pages = this.fit(rp, op.at, start, op.pages, false);
        const end = start + pages;
        const addr = start * PAGE + (op.unaligned ? 512 : 0);
        const call = () => rp.process.madvise(addr, pages * PAGE, MADV_DONTNEED);
        if (op.unaligned) return expectFailure(what, "EINVAL", call);
        if (pages === 0) {
          call();
          return "ok";
        }
        // The kernel zaps what is mapped and still reports a hole with ENOMEM.
        const hole = !Reference.fullyMapped(rp, start, end);
        if (hole) expectFailure(what, "ENOMEM", call);
        else call();
        for (let vpn = start; vpn < end; vpn++) {
          const page = rp.pages.get(vpn);
          if (page !== undefined && (page.kind === "anonPrivate" || page.kind === "filePrivate"))
            page.own = null;
        }
        return "ok";
      }
      case "fork": {
        if (this.ref.processes.length >= PROCESSES_MAX) return "skip";
        const rp = this.pick(op.p);
        const child = rp.process.fork();
        const pages = new Map<number, RefPage>();
        for (const [vpn, page] of rp.pages) pages.set(vpn, { ...page, own: page.own?.slice() ?? null });
        this.ref.processes.push({ process: child, pages });
        return "ok";
      }
      case "exit": {
        if (this.ref.processes.length <= 1) return "skip";
        const at = op.p % this.ref.processes.length;
        this.ref.processes[at]!.process.exit();
        this.ref.processes.splice(at, 1);
        return "ok";
      }
      case "write":
        return this.write(op, what);
      case "read":
        return this.read(op, what);
      case "pwrite": {
        const data = pattern(op.seed, op.length);
        expect(this.file.write(op.offset, data), what).toBe(op.length);
        for (let i = 0; i < op.length; i++) {
          const at = op.offset + i;
          const pgoff = Math.floor(at / PAGE);
          let bytes = this.ref.file.pages.get(pgoff);
          if (bytes === undefined) {
            bytes = new Uint8Array(PAGE);
            this.ref.file.pages.set(pgoff, bytes);
          }
          bytes[at % PAGE] = data[i]!;
        }
        return "ok";
      }
      case "pread": {
        const got = this.file.read(op.offset, op.length);
        this.expectBytes(what, got, (i) => {
          const at = op.offset + i;
          return this.ref.file.pages.get(Math.floor(at / PAGE))?.[at % PAGE] ?? 0;
        });
        return "ok";
      }
      default: {
        const never: never = op;
        throw new Error(`unknown op ${JSON.stringify(never)}`);
      }
    }
  }

  private mmap(op: Extract<Op, { op: "mmap" }>, what: string): string {
    const rp = this.pick(op.p);
    const shared = op.kind === "anonShared" || op.kind === "fileShared";
    const anonymous = op.kind === "anonPrivate" || op.kind === "anonShared";
    const placeFlags = op.place === "fixed" ? MAP_FIXED : op.place === "noreplace" ? MAP_FIXED_NOREPLACE : 0;
    const flags = (shared ? MAP_SHARED : MAP_PRIVATE) | (anonymous ? MAP_ANONYMOUS : 0) | placeFlags;
    const start = this.resolve(rp, op.at);
    const length = op.pages * PAGE;
    const call = (addr: number) =>
      rp.process.mmap(length, {
        addr,
        prot: op.prot,
        flags,
        ...(anonymous ? {} : { file: this.file, offset: op.fileOffset * PAGE }),
      });
    if (op.pages === 0) return expectFailure(what, "EINVAL", () => call(start * PAGE));
    let vpn: number;
    if (op.place === "any") {
      const addr = call(0);
      expect(addr % PAGE, `${what}: mmap address aligned`).toBe(0);
      vpn = addr / PAGE;
      expect(
        Reference.anyMapped(rp, vpn, vpn + op.pages),
        `${what}: mmap at ${hex(vpn)} overlaps a mapping`,
      ).toBe(false);
    } else {
      if (op.unaligned) return expectFailure(what, "EINVAL", () => call(start * PAGE + 512));
      if (op.place === "noreplace" && Reference.anyMapped(rp, start, start + op.pages)) {
        return expectFailure(what, "EEXIST", () => call(start * PAGE));
      }
      expect(call(start * PAGE), `${what}: fixed address`).toBe(start * PAGE);
      this.ref.unmap(rp, start, start + op.pages);
      vpn = start;
    }
    const object = anonymous ? (shared ? this.ref.newObject(op.pages) : null) : this.ref.file;
    const pgoff = anonymous ? 0 : op.fileOffset;
    this.addPages(rp, vpn, op.pages, { prot: op.prot, kind: op.kind, object, pgoff });
    return op.place === "any" ? "ok" : "ok-fixed";
  }

  private mremap(op: Extract<Op, { op: "mremap" }>, what: string): string {
    const rp = this.pick(op.p);
    const ref = this.ref;
    const oldStart = this.resolve(rp, op.at);
    const oldPages = this.fit(rp, op.at, oldStart, op.oldPages, true);
    const fixed = (op.flags & MREMAP_FIXED) !== 0;
    const toStart = fixed ? this.resolve(rp, op.to) : 0;
    const call = (oldAddr: number) =>
      rp.process.mremap(oldAddr, oldPages * PAGE, op.newPages * PAGE, op.flags, toStart * PAGE);
    if (op.unaligned) return expectFailure(what, "EINVAL", () => call(oldStart * PAGE + 512));
    if (fixed && toStart < oldStart + oldPages && oldStart < toStart + op.newPages) {
      return expectFailure(what, "EINVAL", () => call(oldStart * PAGE));
    }
    if (fixed && oldPages === op.newPages) return this.remapMove(rp, oldStart, oldPages, toStart, what, call);
    const vma = Reference.vmaAt(rp, oldStart);
    if (vma === null) return expectFailure(what, "EFAULT", () => call(oldStart * PAGE));
    const oldEnd = oldStart + oldPages;
    if (!fixed && op.newPages <= oldPages) {
      // check_prep_vma asks nothing more of a remap that neither grows nor moves: a shrink may cross VMAs.
      expect(call(oldStart * PAGE), `${what}: resize in place`).toBe(oldStart * PAGE);
      ref.unmap(rp, oldStart + op.newPages, oldEnd);
      return op.newPages < oldPages ? "shrunk" : "same";
    }
    // What must lie in the VMA: the old range, or for a shrink the part that stays.
    if (oldStart + Math.min(oldPages, op.newPages) > vma.end) {
      return expectFailure(what, "EFAULT", () => call(oldStart * PAGE));
    }
    const newEnd = oldStart + op.newPages;
    if (!fixed && oldEnd === vma.end && !Reference.anyMapped(rp, vma.end, newEnd)) {
      expect(call(oldStart * PAGE), `${what}: grow in place`).toBe(oldStart * PAGE);
      const last = rp.pages.get(vma.end - 1)!;
      for (let vpn = vma.end; vpn < newEnd; vpn++) {
        rp.pages.set(vpn, { ...last, pgoff: last.pgoff + (vpn - (vma.end - 1)), own: null });
      }
      return "grown";
    }
    if ((op.flags & MREMAP_MAYMOVE) === 0) return expectFailure(what, "ENOMEM", () => call(oldStart * PAGE));
    const got = call(oldStart * PAGE);
    let newStart: number;
    if (fixed) {
      expect(got, `${what}: MREMAP_FIXED address`).toBe(toStart * PAGE);
      newStart = toStart;
      ref.unmap(rp, newStart, newStart + op.newPages);
    } else {
      expect(got % PAGE, `${what}: moved address aligned`).toBe(0);
      newStart = got / PAGE;
      expect(
        Reference.anyMapped(rp, newStart, newStart + op.newPages),
        `${what}: moved to ${hex(newStart)}, which overlaps a mapping`,
      ).toBe(false);
    }
    const moved = Math.min(oldPages, op.newPages);
    if (op.newPages < oldPages) ref.unmap(rp, oldStart + op.newPages, oldEnd);
    this.movePages(rp, oldStart, moved, newStart, op.newPages);
    return fixed ? "moved-fixed" : "moved";
  }

  /**
   * remap_move: a MREMAP_FIXED move of the same size moves each VMA piece of the old range to the same
   * offset from the target (unmapping only what each piece lands on), keeping the gaps; EFAULT when the
   * range starts unmapped.
   */
  private remapMove(
    rp: RefProcess,
    oldStart: number,
    pages: number,
    toStart: number,
    what: string,
    call: (oldAddr: number) => number,
  ): string {
    if (!rp.pages.has(oldStart)) return expectFailure(what, "EFAULT", () => call(oldStart * PAGE));
    expect(call(oldStart * PAGE), `${what}: MREMAP_FIXED address`).toBe(toStart * PAGE);
    let vpn = oldStart;
    let pieces = 0;
    while (vpn < oldStart + pages) {
      if (!rp.pages.has(vpn)) {
        vpn++;
        continue;
      }
      const id = rp.pages.get(vpn)!.vma;
      let pieceEnd = vpn;
      while (pieceEnd < oldStart + pages && rp.pages.get(pieceEnd)?.vma === id) pieceEnd++;
      const target = toStart + (vpn - oldStart);
      this.ref.unmap(rp, target, target + (pieceEnd - vpn));
      this.movePages(rp, vpn, pieceEnd - vpn, target, pieceEnd - vpn);
      pieces++;
      vpn = pieceEnd;
    }
    return pieces > 1 ? "moved-vmas" : "moved-fixed";
  }

  /** move_vma (surface/pages.ts movePages). */
  private movePages(
    rp: RefProcess,
    oldStart: number,
    moved: number,
    newStart: number,
    newPages: number,
  ): void {
    this.ref.move(rp, oldStart, moved, newStart, newPages);
  }

  /** The pages [first, last] of an access, or a reason it must fault or be skipped. */
  private accessPages(
    rp: RefProcess,
    addr: number,
    length: number,
    write: boolean,
  ): RefPage[] | "SIGSEGV" | "skip" {
    const first = Math.floor(addr / PAGE);
    const last = Math.floor((addr + length - 1) / PAGE);
    const pages: RefPage[] = [];
    for (let vpn = first; vpn <= last; vpn++) {
      const page = rp.pages.get(vpn);
      if (page === undefined || (page.prot & (write ? PROT_WRITE : PROT_READ)) === 0) return "SIGSEGV";
      pages.push(page);
    }
    return pages.some(Reference.pastEnd) ? "skip" : pages;
  }

  private write(op: Extract<Op, { op: "write" }>, what: string): string {
    const rp = this.pick(op.p);
    const addr = this.resolve(rp, op.at) * PAGE + op.at.offset;
    const data = pattern(op.seed, op.length);
    const pages = this.accessPages(rp, addr, op.length, true);
    if (pages === "skip") return "skip";
    if (pages === "SIGSEGV")
      return expectFailure(`${what} at 0x${addr.toString(16)}`, "SIGSEGV", () =>
        rp.process.write(addr, data),
      );
    rp.process.write(addr, data);
    for (let i = 0; i < op.length; i++) {
      const at = addr + i;
      const page = pages[Math.floor(at / PAGE) - Math.floor(addr / PAGE)]!;
      Reference.writable(page)[at % PAGE] = data[i]!;
    }
    return pages.length > 1 ? "ok-straddling" : "ok";
  }

  private read(op: Extract<Op, { op: "read" }>, what: string): string {
    const rp = this.pick(op.p);
    const addr = this.resolve(rp, op.at) * PAGE + op.at.offset;
    const pages = this.accessPages(rp, addr, op.length, false);
    if (pages === "skip") return "skip";
    const label = `${what} pid ${rp.process.pid} at 0x${addr.toString(16)}`;
    if (pages === "SIGSEGV") return expectFailure(label, "SIGSEGV", () => rp.process.read(addr, op.length));
    const got = rp.process.read(addr, op.length);
    this.expectBytes(label, got, (i) => {
      const at = addr + i;
      const page = pages[Math.floor(at / PAGE) - Math.floor(addr / PAGE)]!;
      return Reference.contents(page)[at % PAGE]!;
    });
    return pages.length > 1 ? "ok-straddling" : "ok";
  }

  private expectBytes(what: string, got: Uint8Array, want: (i: number) => number): void {
    for (let i = 0; i < got.length; i++) {
      if (got[i] !== want(i)) {
        throw new Error(`${what}: byte ${i} is ${got[i]}, the reference says ${want(i)}`);
      }
    }
  }

  /** Every readable page of every process, and the file, against the reference. */
  sweep(what: string): void {
    for (const rp of this.ref.processes) {
      for (const [vpn, page] of rp.pages) {
        if ((page.prot & PROT_READ) === 0 || Reference.pastEnd(page)) continue;
        const got = rp.process.read(vpn * PAGE, PAGE);
        const want = Reference.contents(page);
        this.expectBytes(
          `${what}: pid ${rp.process.pid} page ${hex(vpn)} (${page.kind})`,
          got,
          (i) => want[i]!,
        );
      }
    }
    const file = this.file.read(0, FILE_PAGES * PAGE);
    this.expectBytes(
      `${what}: the file`,
      file,
      (i) => this.ref.file.pages.get(Math.floor(i / PAGE))?.[i % PAGE] ?? 0,
    );
  }

  checkInvariants(what: string): void {
    const violations = this.system.checkInvariants();
    if (violations.length > 0) throw new Error(`${what}: invariants violated:\n  ${violations.join("\n  ")}`);
  }
}

/** How often each operation ended each way, over the whole property (printed with HMMSIM_PROPERTY_STATS). */
const outcomes = new Map<string, number>();

function runSequence(ops: readonly Op[]): void {
  const run = new Run();
  ops.forEach((op, index) => {
    const outcome = `${op.op} ${run.step(op, index)}`;
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    run.checkInvariants(`after step ${index} ${op.op}`);
  });
  run.sweep("final sweep");
  for (const rp of run.ref.processes) rp.process.exit();
  run.checkInvariants("after every process exited");
  expect(run.system.kernel.ram.usedPages - run.ref.file.pages.size).toBeLessThanOrEqual(FILE_PAGES);
}

describe("the memory manager against a reference model of process memory", () => {
  it("agrees on every read, every error and every invariant over random syscall sequences", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40, size: "max" }), (ops) => runSequence(ops)),
      { seed: 0x6d6d, numRuns: 400, verbose: 1 },
    );
    if (process.env.HMMSIM_PROPERTY_STATS !== undefined) {
      console.log(
        [...outcomes]
          .sort()
          .map(([outcome, count]) => `${outcome}: ${count}`)
          .join("\n"),
      );
    }
  });
});
