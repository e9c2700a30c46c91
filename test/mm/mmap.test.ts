import { describe, expect, it } from "vitest";
import { EBADF, EEXIST, EFAULT, EINVAL, ENOMEM } from "../../src/base/errno.js";
import { PAGE_SIZE, TASK_SIZE } from "../../src/base/units.js";
import { VM_MAYWRITE, VM_NOHUGEPAGE, VM_READ, VM_SHARED, VM_WRITE } from "../../src/mm/mm_types.js";
import {
  MADV_DONTNEED,
  MAP_32BIT,
  MAP_ANONYMOUS,
  MAP_DROPPABLE,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_STACK,
  MAP_SYNC,
  MMAP_MIN_ADDR,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/mmap.js";
import { pteProtNone, pteWrite } from "../../src/mm/pgtable.js";
import { SignalError } from "../../src/process.js";
import { drain, kernelError, pageOf, pfnAt, pteAt, smallSystem, vmaLayout } from "./helpers.js";
import { expectFailsUnchanged } from "./syscall-state.js";

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

  it("refuses bad lengths, types and offsets as do_mmap does, and maps nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const keep = proc.mmap(P);
    proc.write(keep, pageOf(0x5a));
    const before = vmaLayout(proc);
    // do_mmap: a zero length is EINVAL; -P as an unsigned long is above TASK_SIZE (__get_unmapped_area:
    // ENOMEM), and -1 rounds up to 0 (PAGE_ALIGN wraps: ENOMEM).
    expect(kernelError(() => proc.mmap(0)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mmap(-P)).errno).toBe(ENOMEM);
    expect(kernelError(() => proc.mmap(-1)).errno).toBe(ENOMEM);
    // Not a register value (src/base/abi.ts).
    expect(kernelError(() => proc.mmap(1.5)).errno).toBe(EINVAL);
    // do_mmap's switch on MAP_TYPE: no type, or MAP_SHARED_VALIDATE without a file.
    expect(kernelError(() => proc.mmap(P, { flags: MAP_ANONYMOUS })).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mmap(P, { flags: MAP_PRIVATE | MAP_SHARED | MAP_ANONYMOUS })).errno).toBe(
      EINVAL,
    );
    // sys_mmap (x86-64): an unaligned byte offset, checked before anything else.
    const file = system.createFile("f", 2 * P);
    expect(kernelError(() => proc.mmap(P, { file, offset: 100 })).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mmap(0, { offset: 1 })).errno).toBe(EINVAL);
    // __get_unmapped_area: an unaligned MAP_FIXED address.
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

  it("ignores flag and protection bits it does not know, as do_mmap does (no EINVAL)", () => {
    const system = smallSystem();
    const proc = system.spawn();
    // calc_vm_prot_bits reads only READ, WRITE and EXEC; MAP_PRIVATE and MAP_SHARED ignore unknown flags.
    const a = proc.mmap(P, { prot: PROT_READ | PROT_WRITE | 0x100 });
    expect(proc.mm.findVma(a / P)!.flags & (VM_READ | VM_WRITE)).toBe(VM_READ | VM_WRITE);
    const b = proc.mmap(P, { flags: MAP_PRIVATE | MAP_ANONYMOUS | 0x4000_0000 });
    // A flag word above 32 bits keeps its low bits: MAP_PRIVATE | MAP_ANONYMOUS.
    const c = proc.mmap(P, { flags: 2 ** 40 + (MAP_PRIVATE | MAP_ANONYMOUS) });
    // MAP_NORESERVE is accepted (hmmsim has no overcommit accounting to skip).
    const d = proc.mmap(P, { flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE });
    proc.writeU32(d, 7);
    expect(proc.readU32(d)).toBe(7);
    expect(new Set([a, b, c, d]).size).toBe(4);
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

  it("a hole after the start: the VMAs before it change, then ENOMEM (do_mprotect_pkey's walk)", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(P, { addr: FIXED, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.mmap(P, { addr: FIXED + 2 * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(FIXED, pageOf(8));
    expect(kernelError(() => proc.mprotect(FIXED, 3 * P, PROT_READ)).errno).toBe(ENOMEM);
    // The first VMA changed; the one after the hole was never reached.
    expect(vmaLayout(proc).map((v) => v.flags & (VM_READ | VM_WRITE))).toEqual([VM_READ, VM_READ | VM_WRITE]);
    expect(pteWrite(pteAt(proc, FIXED))).toBe(false);
    expect(() => proc.write(FIXED, pageOf(9).subarray(0, 1))).toThrow(SignalError);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a hole at the start changes nothing (ENOMEM before the walk)", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(P, { addr: FIXED + P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(FIXED + P, pageOf(8));
    const before = vmaLayout(proc);
    const pte = pteAt(proc, FIXED + P);
    expect(kernelError(() => proc.mprotect(FIXED, 2 * P, PROT_READ)).errno).toBe(ENOMEM);
    expect(vmaLayout(proc)).toEqual(before);
    expect(pteAt(proc, FIXED + P)).toBe(pte);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("checks as do_mprotect_pkey does: EINVAL, then length 0 is success, then ENOMEM, then the prot", () => {
    const proc = smallSystem().spawn();
    const addr = proc.mmap(P);
    const before = vmaLayout(proc);
    expect(kernelError(() => proc.mprotect(addr + 8, P, PROT_READ)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mprotect(addr, P, 0x40)).errno).toBe(EINVAL);
    // Both PROT_GROWSDOWN and PROT_GROWSUP: EINVAL before anything else.
    expect(kernelError(() => proc.mprotect(addr, 0, 0x0300_0000)).errno).toBe(EINVAL);
    // Length 0 returns before the protection is looked at.
    proc.mprotect(addr, 0, 0x40);
    // -1 rounds up to 0 bytes: end <= start is ENOMEM, ahead of the protection check.
    expect(kernelError(() => proc.mprotect(addr, -1, 0x40)).errno).toBe(ENOMEM);
    // prot is an unsigned long: 2^47 is an unknown bit (EINVAL), not PROT_NONE.
    expect(kernelError(() => proc.mprotect(addr, P, 2 ** 47)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mprotect(addr, P, Number.NaN)).errno).toBe(EINVAL);
    // No VMA grows in hmmsim (and x86 has no VM_GROWSUP): EINVAL.
    expect(kernelError(() => proc.mprotect(addr, P, PROT_READ | 0x0100_0000)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mprotect(addr, P, PROT_READ | 0x0200_0000)).errno).toBe(EINVAL);
    expect(vmaLayout(proc)).toEqual(before);
    expect(before[0]!.flags & VM_MAYWRITE).toBe(VM_MAYWRITE);
    // PROT_SEM passes arch_validate_prot and changes nothing.
    proc.mprotect(addr, P, PROT_READ | PROT_WRITE | 0x8);
    expect(vmaLayout(proc)).toEqual(before);
  });

  it("a protection that does not change leaves the VMA unsplit (mprotect_fixup)", () => {
    const proc = smallSystem().spawn();
    const addr = proc.mmap(3 * P);
    proc.mprotect(addr + P, P, PROT_READ | PROT_WRITE);
    expect(proc.mm.vmas).toHaveLength(1);
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

describe("mmap and munmap argument checks, as the kernel makes them", () => {
  const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

  it("munmap: do_vmi_munmap refuses a start above TASK_SIZE (a negative address) or a length past it", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { addr: FIXED, flags: ANON | MAP_FIXED });
    proc.write(addr, pageOf(3, 2));
    // -4096 is 0xffff_ffff_ffff_f000: start > TASK_SIZE.
    expectFailsUnchanged(system, "EINVAL", () => proc.munmap(-4096, 8192), "munmap(-4096)");
    expectFailsUnchanged(system, "EINVAL", () => proc.munmap(TASK_SIZE + P, P), "above TASK_SIZE");
    expectFailsUnchanged(system, "EINVAL", () => proc.munmap(addr, TASK_SIZE), "len > TASK_SIZE - start");
    expectFailsUnchanged(system, "EINVAL", () => proc.munmap(addr, Number.NaN), "NaN");
    expectFailsUnchanged(system, "EINVAL", () => proc.munmap(addr, 2 ** 64), "2^64 fits no register");
    // The last page below TASK_SIZE is a valid range, and unmapping a hole succeeds.
    proc.munmap(TASK_SIZE - P, P);
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(3, 2));
  });

  it("MAP_FIXED below mmap_min_addr is EPERM (security_mmap_addr); above TASK_SIZE is ENOMEM", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(P, { addr: FIXED, flags: ANON | MAP_FIXED });
    expectFailsUnchanged(system, "EPERM", () => proc.mmap(P, { addr: 0, flags: ANON | MAP_FIXED }), "at 0");
    expectFailsUnchanged(
      system,
      "EPERM",
      () => proc.mmap(P, { addr: 0xf000, flags: ANON | MAP_FIXED }),
      "at 60 KiB",
    );
    expectFailsUnchanged(
      system,
      "EPERM",
      () => proc.mmap(P, { addr: 0, flags: ANON | MAP_FIXED_NOREPLACE }),
      "NOREPLACE at 0",
    );
    // __get_unmapped_area looks at the range before the alignment: past TASK_SIZE is ENOMEM even unaligned.
    expectFailsUnchanged(
      system,
      "ENOMEM",
      () => proc.mmap(P, { addr: TASK_SIZE, flags: ANON | MAP_FIXED }),
      "top",
    );
    expectFailsUnchanged(
      system,
      "ENOMEM",
      () => proc.mmap(P, { addr: -4095, flags: ANON | MAP_FIXED }),
      "-4095",
    );
    // At mmap_min_addr exactly it maps.
    expect(proc.mmap(P, { addr: MMAP_MIN_ADDR, flags: ANON | MAP_FIXED })).toBe(MMAP_MIN_ADDR);
    // A hint below mmap_min_addr is no error: it is only a hint.
    expect(proc.mmap(P, { addr: 0x1000 })).toBeGreaterThanOrEqual(MMAP_MIN_ADDR);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("offsets: unaligned is EINVAL first; a file offset past MAX_LFS_FILESIZE is EOVERFLOW; anonymous ignores it", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const file = system.createFile("f", P);
    // sys_mmap's alignment check comes before the length check.
    expectFailsUnchanged(system, "EINVAL", () => proc.mmap(0, { file, offset: 1 }), "unaligned first");
    // -4096 is pgoff 2^52 - 1: file_mmap_ok refuses it.
    expectFailsUnchanged(
      system,
      "EOVERFLOW",
      () => proc.mmap(P, { file, offset: -P }),
      "negative file offset",
    );
    expectFailsUnchanged(system, "EOVERFLOW", () => proc.mmap(P, { file, offset: 2 ** 63 }), "2^63");
    // An anonymous mapping never looks at pgoff.
    const anon = proc.mmap(P, { offset: -P });
    proc.writeU32(anon, 5);
    expect(proc.readU32(anon)).toBe(5);
    // The last page offset that still fits: (MAX_LFS_FILESIZE - len) >> PAGE_SHIFT.
    const far = proc.mmap(P, { file, offset: 2 ** 63 - 2 * P, flags: MAP_PRIVATE });
    expect(proc.mm.findVma(far / P)!.pgoff).toBe(2 ** 51 - 2);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("file flags: MAP_SHARED ignores what it does not know, MAP_SHARED_VALIDATE refuses it (EOPNOTSUPP)", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const file = system.createFile("f", P);
    const a = proc.mmap(P, { file, flags: MAP_SHARED | 0x4000_0000 });
    expect(proc.mm.findVma(a / P)!.flags & VM_SHARED).toBe(VM_SHARED);
    const b = proc.mmap(P, { file, flags: MAP_SHARED_VALIDATE });
    expect(proc.mm.findVma(b / P)!.flags & VM_SHARED).toBe(VM_SHARED);
    expectFailsUnchanged(
      system,
      "EOPNOTSUPP",
      () => proc.mmap(P, { file, flags: MAP_SHARED_VALIDATE | MAP_SYNC }),
      "MAP_SYNC on tmpfs",
    );
    // A type do_mmap does not know, with a file.
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.mmap(P, { file, flags: MAP_DROPPABLE }),
      "droppable file",
    );
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a file that is not a TmpFile of this system is a bad fd (EBADF), ignored with MAP_ANONYMOUS", () => {
    const system = smallSystem();
    const other = smallSystem().createFile("elsewhere", P);
    const proc = system.spawn();
    for (const file of [other, "f", 3, { space: 1 }] as never[]) {
      expectFailsUnchanged(
        system,
        "EBADF",
        () => proc.mmap(P, { file, flags: MAP_SHARED }),
        `file ${String(file)}`,
      );
    }
    const addr = proc.mmap(P, { file: other, flags: ANON });
    expect(proc.mm.findVma(addr / P)!.file).toBeNull();
    expectFailsUnchanged(system, "EINVAL", () => proc.mmap(P, null as never), "null options");
  });

  it("features hmmsim does not model answer as a kernel without them: MAP_LOCKED, MAP_GROWSDOWN, MAP_DROPPABLE; MAP_HUGETLB with no huge page reserved is ENOMEM", () => {
    const system = smallSystem();
    const proc = system.spawn();
    expectFailsUnchanged(system, "ENOMEM", () => proc.mmap(P, { flags: ANON | MAP_HUGETLB }), "MAP_HUGETLB");
    expectFailsUnchanged(system, "EPERM", () => proc.mmap(P, { flags: ANON | MAP_LOCKED }), "MAP_LOCKED");
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.mmap(P, { flags: ANON | MAP_GROWSDOWN }),
      "MAP_GROWSDOWN",
    );
    expectFailsUnchanged(
      system,
      "EOPNOTSUPP",
      () => proc.mmap(P, { flags: MAP_DROPPABLE | MAP_ANONYMOUS }),
      "MAP_DROPPABLE",
    );
  });

  it("MAP_32BIT places the mapping in [1 GiB, 2 GiB); MAP_STACK sets VM_NOHUGEPAGE", () => {
    const proc = smallSystem().spawn();
    const low = proc.mmap(4 * P, { flags: ANON | MAP_32BIT });
    expect(low).toBeGreaterThanOrEqual(2 ** 30);
    expect(low + 4 * P).toBeLessThanOrEqual(2 ** 31);
    const next = proc.mmap(P, { flags: ANON | MAP_32BIT });
    expect(next).toBe(low + 4 * P);
    const stack = proc.mmap(P, { flags: ANON | MAP_STACK });
    expect(proc.mm.findVma(stack / P)!.flags & VM_NOHUGEPAGE).toBe(VM_NOHUGEPAGE);
  });

  it("values no register holds are EINVAL, whatever the argument", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const bad: unknown[] = [
      Number.NaN,
      1.5,
      Number.POSITIVE_INFINITY,
      2 ** 64,
      -(2 ** 64),
      4096n,
      "4096",
      null,
    ];
    for (const value of bad) {
      const v = value as number;
      expectFailsUnchanged(system, "EINVAL", () => proc.mmap(v), `length ${String(value)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.mmap(P, { addr: v }), `addr ${String(value)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.mmap(P, { prot: v }), `prot ${String(value)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.mmap(P, { flags: v }), `flags ${String(value)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.mmap(P, { offset: v }), `offset ${String(value)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.munmap(v, P), `munmap addr ${String(value)}`);
    }
  });
});
