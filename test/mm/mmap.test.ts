import { describe, expect, it } from "vitest";
import { EBADF, EEXIST, EFAULT, EINVAL, ENOMEM } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { VM_MAYWRITE, VM_READ, VM_SHARED, VM_WRITE } from "../../src/mm/mm_types.js";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/mmap.js";
import { pteProtNone, pteWrite } from "../../src/mm/pgtable.js";
import { SignalError } from "../../src/process.js";
import { drain, kernelError, pageOf, pfnAt, pteAt, smallSystem, vmaLayout } from "./helpers.js";

const P = PAGE_SIZE;
/** A fixed address well inside the range mmap hands out. */
const FIXED = 0x10_0000_0000;

describe("mmap", () => {
  it("maps zero-filled private anonymous memory at a page-aligned address", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P);
    expect(addr % P).toBe(0);
    expect(addr).toBeGreaterThanOrEqual(2 ** 32);
    expect(vmaLayout(proc)).toHaveLength(1);
    const vma = proc.mm.vmas[0]!;
    expect(vma.pages).toBe(3);
    expect(vma.flags & (VM_READ | VM_WRITE | VM_SHARED)).toBe(VM_READ | VM_WRITE);
    expect(proc.read(addr, 3 * P)).toEqual(new Uint8Array(3 * P));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("rounds the length up to whole pages", () => {
    const proc = smallSystem().spawn();
    const addr = proc.mmap(P + 1);
    expect(proc.mm.vmas[0]!.pages).toBe(2);
    proc.write(addr + P + 100, pageOf(7).subarray(0, 10));
    expect(proc.read(addr + P + 100, 10)).toEqual(pageOf(7).subarray(0, 10));
  });

  it("places successive mappings without overlap", () => {
    const proc = smallSystem().spawn();
    const a = proc.mmap(4 * P);
    const b = proc.mmap(4 * P);
    const c = proc.mmap(P);
    const ranges = [a, b, c].map((x, i) => [x, x + (i === 2 ? 1 : 4) * P]).sort((x, y) => x[0]! - y[0]!);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![1]!);
    expect(proc.mm.vmas).toHaveLength(3);
  });

  it("honours a free hint address", () => {
    const proc = smallSystem().spawn();
    expect(proc.mmap(2 * P, { addr: FIXED })).toBe(FIXED);
  });

  it("refuses bad lengths, flags, protections and offsets with EINVAL and maps nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const keep = proc.mmap(P);
    proc.write(keep, pageOf(0x5a));
    const before = vmaLayout(proc);
    expect(kernelError(() => proc.mmap(0)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mmap(-P)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mmap(1.5)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mmap(P, { flags: MAP_ANONYMOUS })).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mmap(P, { flags: MAP_PRIVATE | MAP_SHARED | MAP_ANONYMOUS })).errno).toBe(
      EINVAL,
    );
    expect(kernelError(() => proc.mmap(P, { flags: MAP_PRIVATE | MAP_ANONYMOUS | 0x4000_0000 })).errno).toBe(
      EINVAL,
    );
    expect(kernelError(() => proc.mmap(P, { prot: 0x100 })).errno).toBe(EINVAL);
    const file = system.createFile("f", 2 * P);
    expect(kernelError(() => proc.mmap(P, { file, offset: 100 })).errno).toBe(EINVAL);
    expect(
      kernelError(() => proc.mmap(P, { addr: FIXED + 1, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED }))
        .errno,
    ).toBe(EINVAL);
    const err = kernelError(() => proc.mmap(0));
    expect(err.code).toBe("EINVAL");
    expect(err.message).toBe("mmap: EINVAL");
    expect(vmaLayout(proc)).toEqual(before);
    expect(proc.read(keep, P)).toEqual(pageOf(0x5a));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("refuses a file mapping without a file (EBADF) and a huge length (ENOMEM)", () => {
    const proc = smallSystem().spawn();
    expect(kernelError(() => proc.mmap(P, { flags: MAP_PRIVATE })).errno).toBe(EBADF);
    expect(kernelError(() => proc.mmap(2 ** 48)).errno).toBe(ENOMEM);
    expect(proc.mm.vmas).toEqual([]);
  });

  it("MAP_FIXED replaces what was mapped there", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    expect(addr).toBe(FIXED);
    proc.write(addr, pageOf(1, 2));
    drain(system);
    const used = system.usedPages;
    expect(proc.mmap(P, { addr: FIXED + P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED })).toBe(FIXED + P);
    expect(system.usedPages).toBe(used - 1);
    expect(proc.read(FIXED, P)).toEqual(pageOf(1));
    expect(proc.read(FIXED + P, P)).toEqual(pageOf(0));
    expect(proc.mm.vmas.map((v) => v.pages)).toEqual([1, 1]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("MAP_FIXED_NOREPLACE over a mapping fails with EEXIST and changes nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(2 * P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(FIXED, pageOf(9, 2));
    const before = vmaLayout(proc);
    const err = kernelError(() =>
      proc.mmap(2 * P, { addr: FIXED + P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE }),
    );
    expect(err.errno).toBe(EEXIST);
    expect(vmaLayout(proc)).toEqual(before);
    expect(proc.read(FIXED, 2 * P)).toEqual(pageOf(9, 2));
    // Next to the mapping it succeeds at exactly the address asked for.
    expect(
      proc.mmap(P, { addr: FIXED + 2 * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE }),
    ).toBe(FIXED + 2 * P);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("munmap", () => {
  it("refuses an unaligned address or a zero length with EINVAL and changes nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.write(addr, pageOf(3, 2));
    const before = vmaLayout(proc);
    expect(kernelError(() => proc.munmap(addr + 1, P)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.munmap(addr, 0)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.munmap(addr, -P)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.munmap(2 ** 48, P)).errno).toBe(EINVAL);
    expect(vmaLayout(proc)).toEqual(before);
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(3, 2));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("unmapping the middle page splits the VMA, frees the page and leaves the rest intact", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P);
    for (let i = 0; i < 3; i++) proc.write(addr + i * P, pageOf(i + 1));
    drain(system);
    const middle = pfnAt(proc, addr + P);
    const used = system.usedPages;
    proc.munmap(addr + P, P);
    expect(proc.mm.vmas.map((v) => [v.start * P, v.pages])).toEqual([
      [addr, 1],
      [addr + 2 * P, 1],
    ]);
    expect(system.usedPages).toBe(used - 1);
    expect(system.kernel.ram.isFree(middle)).toBe(true);
    expect(() => proc.read(addr + P, 1)).toThrow(SignalError);
    expect(proc.read(addr, P)).toEqual(pageOf(1));
    expect(proc.read(addr + 2 * P, P)).toEqual(pageOf(3));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("unmapping a hole succeeds and changes nothing; a range over several VMAs removes them all", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const a = proc.mmap(P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    const b = proc.mmap(P, { addr: FIXED + 2 * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(a, pageOf(1));
    proc.write(b, pageOf(2));
    const before = vmaLayout(proc);
    proc.munmap(FIXED + P, P);
    expect(vmaLayout(proc)).toEqual(before);
    proc.munmap(FIXED, 3 * P);
    expect(proc.mm.vmas).toEqual([]);
    drain(system);
    expect(system.usedPages).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("the signal for an access to an unmapped page names SIGSEGV and the address", () => {
    const proc = smallSystem().spawn();
    const addr = proc.mmap(P);
    proc.munmap(addr, P);
    let caught: unknown;
    try {
      proc.readU32(addr + 8);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SignalError);
    expect(caught).toMatchObject({ signal: "SIGSEGV", address: addr + 8, errno: EFAULT });
  });
});

describe("mprotect", () => {
  it("PROT_READ makes writes fault with SIGSEGV while reads still work", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.write(addr, pageOf(4, 2));
    proc.mprotect(addr, 2 * P, PROT_READ);
    expect(pteWrite(pteAt(proc, addr))).toBe(false);
    expect(() => proc.write(addr, pageOf(5).subarray(0, 1))).toThrow(SignalError);
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(4, 2));
    proc.mprotect(addr, 2 * P, PROT_READ | PROT_WRITE);
    proc.write(addr, pageOf(6).subarray(0, 1));
    expect(proc.read(addr, 2)).toEqual(Uint8Array.from([6, 4]));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("PROT_NONE makes the page inaccessible and keeps its contents", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.write(addr, pageOf(0x11));
    const pfn = pfnAt(proc, addr);
    proc.mprotect(addr, P, PROT_NONE);
    expect(pteProtNone(pteAt(proc, addr))).toBe(true);
    expect(() => proc.read(addr, 1)).toThrow(SignalError);
    proc.mprotect(addr, P, PROT_READ);
    expect(pfnAt(proc, addr)).toBe(pfn);
    expect(proc.read(addr, P)).toEqual(pageOf(0x11));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a partial range splits the VMA in three", () => {
    const proc = smallSystem().spawn();
    const addr = proc.mmap(3 * P);
    proc.mprotect(addr + P, P, PROT_READ);
    const layout = proc.mm.vmas.map((v) => [v.start * P, v.pages, v.flags & (VM_READ | VM_WRITE)]);
    expect(layout).toEqual([
      [addr, 1, VM_READ | VM_WRITE],
      [addr + P, 1, VM_READ],
      [addr + 2 * P, 1, VM_READ | VM_WRITE],
    ]);
  });

  it("a range with a hole fails with ENOMEM and changes nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.mmap(P, { addr: FIXED + 2 * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(FIXED, pageOf(8));
    const before = vmaLayout(proc);
    const pte = pteAt(proc, FIXED);
    expect(kernelError(() => proc.mprotect(FIXED, 3 * P, PROT_READ)).errno).toBe(ENOMEM);
    expect(vmaLayout(proc)).toEqual(before);
    expect(pteAt(proc, FIXED)).toBe(pte);
    proc.write(FIXED, pageOf(9).subarray(0, 1));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("refuses an unaligned address or an unknown protection with EINVAL; length 0 is a no-op", () => {
    const proc = smallSystem().spawn();
    const addr = proc.mmap(P);
    const before = vmaLayout(proc);
    expect(kernelError(() => proc.mprotect(addr + 8, P, PROT_READ)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mprotect(addr, P, 0x40)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mprotect(addr, -1, PROT_READ)).errno).toBe(EINVAL);
    proc.mprotect(addr, 0, PROT_NONE);
    expect(vmaLayout(proc)).toEqual(before);
    expect(before[0]!.flags & VM_MAYWRITE).toBe(VM_MAYWRITE);
  });
});

describe("mremap", () => {
  it("grows in place when the pages after are free", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(addr, pageOf(2));
    expect(proc.mremap(addr, P, 3 * P)).toBe(addr);
    expect(proc.mm.vmas[0]!.pages).toBe(3);
    expect(proc.read(addr, 3 * P)).toEqual(Uint8Array.from([...pageOf(2), ...pageOf(0, 2)]));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("shrinking unmaps the tail and frees its pages", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P);
    proc.write(addr, pageOf(1, 3));
    drain(system);
    expect(proc.mremap(addr, 3 * P, P)).toBe(addr);
    expect(system.usedPages).toBe(1);
    expect(() => proc.read(addr + P, 1)).toThrow(SignalError);
    expect(proc.read(addr, P)).toEqual(pageOf(1));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("growing into a neighbour needs MREMAP_MAYMOVE; with it the pages move, not copy", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.mmap(P, { addr: FIXED + 2 * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(addr, Uint8Array.from([...pageOf(0xa1), ...pageOf(0xa2)]));
    drain(system);
    const pfns = [pfnAt(proc, addr), pfnAt(proc, addr + P)];
    const before = vmaLayout(proc);
    expect(kernelError(() => proc.mremap(addr, 2 * P, 4 * P)).errno).toBe(ENOMEM);
    expect(vmaLayout(proc)).toEqual(before);
    const moved = proc.mremap(addr, 2 * P, 4 * P, MREMAP_MAYMOVE);
    expect(moved).not.toBe(addr);
    expect(proc.read(moved, P)).toEqual(pageOf(0xa1));
    expect(proc.read(moved + P, P)).toEqual(pageOf(0xa2));
    expect(proc.read(moved + 2 * P, 2 * P)).toEqual(pageOf(0, 2));
    expect([pfnAt(proc, moved), pfnAt(proc, moved + P)]).toEqual(pfns);
    const pages = system.kernel.pages;
    for (const pfn of pfns) expect([pages.refcount[pfn], pages.mapcount[pfn]]).toEqual([1, 1]);
    expect(() => proc.read(addr, 1)).toThrow(SignalError);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("MREMAP_FIXED moves to the address given, replacing what was there", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.write(addr, pageOf(0x77));
    const target = proc.mmap(P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(target, pageOf(0x33));
    expect(proc.mremap(addr, P, P, MREMAP_MAYMOVE | MREMAP_FIXED, FIXED)).toBe(FIXED);
    expect(proc.read(FIXED, P)).toEqual(pageOf(0x77));
    expect(proc.mm.vmas).toHaveLength(1);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("refuses bad requests and changes nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(addr, pageOf(5, 2));
    const before = vmaLayout(proc);
    // An address with no mapping.
    expect(kernelError(() => proc.mremap(FIXED + 8 * P, P, 2 * P, MREMAP_MAYMOVE)).errno).toBe(EFAULT);
    // An old range that runs past its VMA.
    expect(kernelError(() => proc.mremap(addr, 3 * P, 4 * P, MREMAP_MAYMOVE)).errno).toBe(EFAULT);
    // MREMAP_FIXED without MREMAP_MAYMOVE.
    expect(kernelError(() => proc.mremap(addr, P, P, MREMAP_FIXED, FIXED + 16 * P)).errno).toBe(EINVAL);
    // A new range that overlaps the old one.
    expect(
      kernelError(() => proc.mremap(addr, 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_FIXED, addr + P)).errno,
    ).toBe(EINVAL);
    expect(kernelError(() => proc.mremap(addr + 1, P, P)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mremap(addr, P, 0)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mremap(addr, P, P, 0x80)).errno).toBe(EINVAL);
    expect(vmaLayout(proc)).toEqual(before);
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(5, 2));
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("madvise(MADV_DONTNEED)", () => {
  it("private anonymous pages read back as zeros and are freed", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.write(addr, pageOf(0xee, 2));
    drain(system);
    proc.madvise(addr, P, MADV_DONTNEED);
    expect(system.usedPages).toBe(1);
    expect(proc.read(addr, P)).toEqual(pageOf(0));
    expect(proc.read(addr + P, P)).toEqual(pageOf(0xee));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a shared file mapping keeps its data: the page cache still has it", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const file = system.createFile("data", P);
    const addr = proc.mmap(P, { file });
    proc.write(addr, pageOf(0x42));
    proc.madvise(addr, P, MADV_DONTNEED);
    expect(pteAt(proc, addr)).toBe(0);
    expect(proc.read(addr, P)).toEqual(pageOf(0x42));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a private file mapping drops its private copy and sees the file again", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const file = system.createFile("data", P);
    file.write(0, pageOf(0x10));
    const addr = proc.mmap(P, { file, flags: MAP_PRIVATE });
    proc.write(addr, pageOf(0x20));
    proc.madvise(addr, P, MADV_DONTNEED);
    expect(proc.read(addr, P)).toEqual(pageOf(0x10));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("refuses unknown advice and unaligned addresses with EINVAL; a hole gives ENOMEM after zapping", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(FIXED, pageOf(1));
    expect(kernelError(() => proc.madvise(FIXED, P, 99)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.madvise(FIXED + 1, P, MADV_DONTNEED)).errno).toBe(EINVAL);
    expect(proc.read(FIXED, P)).toEqual(pageOf(1));
    expect(kernelError(() => proc.madvise(FIXED, 2 * P, MADV_DONTNEED)).errno).toBe(ENOMEM);
    expect(proc.read(FIXED, P)).toEqual(pageOf(0));
    expect(system.checkInvariants()).toEqual([]);
  });
});
