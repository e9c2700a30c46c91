/**
 * Argument checks of the migration entry points and of the dmirror commands: each bad argument gives
 * -EINVAL (or the command's errno) and changes nothing.
 */
import { describe, expect, it } from "vitest";
import { EINVAL } from "../../src/base/errno.js";
import { HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_WRITE } from "../../src/drivers/dmirror.js";
import { type MigrateVmaArgs, migrateVmaFinalize, migrateVmaSetup } from "../../src/mm/migrate_device.js";
import { MIGRATE_VMA_SELECT_SYSTEM } from "../../src/mm/migrate_pfn.js";
import { type MigrateVmaOps, migrateVma } from "../../src/mm/migrate_vma.js";
import { VM_HUGETLB, VM_IO, VM_MIXEDMAP, VM_PFNMAP, Vma } from "../../src/mm/mm_types.js";
import { MAP_ANONYMOUS, MAP_SHARED, PROT_NONE } from "../../src/mm/mmap.js";
import type { Kfn } from "../../src/sched/thread.js";
import { errorCode, P, PROTOCOLS, pfnAt, type Setup, setup } from "./helpers.js";

const NPAGES = 4;
const SYSTEM_PAGE = HMM_DMIRROR_PROT_WRITE;
const DEVICE_PAGE = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE;

/** Driver callbacks that do nothing (nothing moves, finalize restores every page). */
const noopOps: MigrateVmaOps<null> = {
  *allocAndCopy() {},
  *finalizeAndMap() {},
};

function call<T>(s: Setup, body: Kfn<T>): T {
  return s.system.kernel.sched.call("test", body);
}

/** A buffer of NPAGES filled pages and its VMA. */
function buffer(s: Setup): { addr: number; vma: Vma } {
  const addr = s.proc.mmap(NPAGES * P);
  s.proc.fillPages(addr, NPAGES, 11);
  const vma = s.proc.mm.findVma(addr / P);
  expect(vma).not.toBeNull();
  return { addr, vma: vma! };
}

/** Nothing moved: every page is still a writable system page with its data, and the state is consistent. */
function expectUntouched(s: Setup, addr: number): void {
  expect(Array.from(s.fd.snapshot(addr, NPAGES))).toEqual(new Array(NPAGES).fill(SYSTEM_PAGE));
  expect(s.proc.checkPages(addr, NPAGES, 11)).toEqual([]);
  expect(s.system.checkInvariants()).toEqual([]);
}

/** A VMA over the same range with extra flags, not linked into the mm (the checks reject it first). */
function vmaWithFlags(vma: Vma, flags: number): Vma {
  return new Vma(vma.mm, vma.start, vma.end, vma.flags | flags, vma.pgoff, vma.file, vma.anonVma);
}

for (const protocol of PROTOCOLS) {
  describe(`migrate_vma argument checks [${protocol}]`, () => {
    it("returns -EINVAL for a missing, hugetlb or VM_SPECIAL vma", () => {
      const s = setup(protocol);
      const { addr, vma } = buffer(s);
      const src = new Float64Array(NPAGES);
      const dst = new Float64Array(NPAGES);
      const end = addr + NPAGES * P;
      const ctx = s.system.migrateContext;
      expect(call(s, migrateVma(ctx, noopOps, null, addr, end, src, dst, null))).toBe(-EINVAL);
      for (const flags of [VM_HUGETLB, VM_IO, VM_PFNMAP, VM_MIXEDMAP]) {
        const bad = vmaWithFlags(vma, flags);
        expect(call(s, migrateVma(ctx, noopOps, bad, addr, end, src, dst, null))).toBe(-EINVAL);
      }
      expectUntouched(s, addr);
    });

    it("returns -EINVAL for start or end outside the vma, and for start >= end", () => {
      const s = setup(protocol);
      const { addr, vma } = buffer(s);
      const src = new Float64Array(NPAGES + 2);
      const dst = new Float64Array(NPAGES + 2);
      const end = addr + NPAGES * P;
      const ctx = s.system.migrateContext;
      const cases: [number, number][] = [
        [addr - P, end], // start below the vma
        [addr, end + P], // end above the vma
        [end, end + P], // start at the vma's end
        [addr - 2 * P, addr], // entirely below
        [addr + P, addr + P], // start == end
        [addr + 2 * P, addr + P], // start > end
        [addr + P + 17, addr + P + 100], // the same page once masked: empty
      ];
      for (const [start, stop] of cases) {
        expect(call(s, migrateVma(ctx, noopOps, vma, start, stop, src, dst, null)), `${start}..${stop}`).toBe(
          -EINVAL,
        );
      }
      expectUntouched(s, addr);
    });

    it("returns -EINVAL for missing ops, src or dst", () => {
      const s = setup(protocol);
      const { addr, vma } = buffer(s);
      const src = new Float64Array(NPAGES);
      const dst = new Float64Array(NPAGES);
      const end = addr + NPAGES * P;
      const ctx = s.system.migrateContext;
      expect(call(s, migrateVma(ctx, null, vma, addr, end, src, dst, null))).toBe(-EINVAL);
      expect(call(s, migrateVma(ctx, noopOps, vma, addr, end, null, dst, null))).toBe(-EINVAL);
      expect(call(s, migrateVma(ctx, noopOps, vma, addr, end, src, null, null))).toBe(-EINVAL);
      expectUntouched(s, addr);
    });

    it("returns 0 for good arguments even when the driver moves nothing", () => {
      const s = setup(protocol);
      const { addr, vma } = buffer(s);
      const src = new Float64Array(NPAGES);
      const dst = new Float64Array(NPAGES);
      const ctx = s.system.migrateContext;
      expect(call(s, migrateVma(ctx, noopOps, vma, addr, addr + NPAGES * P, src, dst, null))).toBe(0);
      expectUntouched(s, addr);
    });
  });

  describe(`migrate_vma_setup argument checks [${protocol}]`, () => {
    function args(vma: Vma | null, start: number, end: number, n = NPAGES): MigrateVmaArgs {
      return {
        vma,
        start,
        end,
        src: new Float64Array(n),
        dst: new Float64Array(n),
        pgmapOwner: null,
        flags: MIGRATE_VMA_SELECT_SYSTEM,
      };
    }

    it("returns -EINVAL for a missing, hugetlb or VM_SPECIAL vma, a bad range, or missing src/dst", () => {
      const s = setup(protocol);
      const { addr, vma } = buffer(s);
      const ctx = s.system.migrateContext;
      const end = addr + NPAGES * P;
      const bad: MigrateVmaArgs[] = [
        args(null, addr, end),
        args(vmaWithFlags(vma, VM_HUGETLB), addr, end),
        args(vmaWithFlags(vma, VM_IO), addr, end),
        args(vmaWithFlags(vma, VM_PFNMAP), addr, end),
        args(vma, addr - P, end),
        args(vma, addr, end + P),
        args(vma, addr + P, addr + P),
        args(vma, addr + 2 * P, addr + P),
        { ...args(vma, addr, end), src: null },
        { ...args(vma, addr, end), dst: null },
        args(vma, addr, end, NPAGES - 1), // arrays shorter than the range
      ];
      for (const a of bad) expect(call(s, migrateVmaSetup(ctx, a))).toBe(-EINVAL);
      expectUntouched(s, addr);
    });

    it("returns -EINVAL for a fault page that is not a locked device-private page", () => {
      const s = setup(protocol);
      const { addr, vma } = buffer(s);
      const ctx = s.system.migrateContext;
      const end = addr + NPAGES * P;
      // A system page is never a valid fault page.
      const systemPfn = pfnAt(s.proc, addr);
      expect(call(s, migrateVmaSetup(ctx, { ...args(vma, addr, end), faultPage: systemPfn }))).toBe(-EINVAL);
      // A device-private page that is not locked is not one either.
      const other = s.proc.mmap(P);
      s.proc.fillPages(other, 1, 12);
      expect(s.fd.migrateToDevice(other, 1).cpages).toBe(1);
      const devicePfn = pfnAt(s.proc, other);
      expect(s.system.kernel.pages.isZoneDevice(devicePfn)).toBe(true);
      expect(call(s, migrateVmaSetup(ctx, { ...args(vma, addr, end), faultPage: devicePfn }))).toBe(-EINVAL);
      expectUntouched(s, addr);
      expect(Array.from(s.fd.snapshot(other, 1))).toEqual([DEVICE_PAGE]);
    });

    it("returns 0 for good arguments, and finalize restores what setup unmapped", () => {
      const s = setup(protocol);
      const { addr, vma } = buffer(s);
      const ctx = s.system.migrateContext;
      const a = args(vma, addr, addr + NPAGES * P);
      s.system.kernel.sched.call(
        "setup and finalize",
        (function* () {
          expect(yield* migrateVmaSetup(ctx, a)).toBe(0);
          expect(a.cpages).toBe(NPAGES);
          expect(a.npages).toBe(NPAGES);
          yield* migrateVmaFinalize(ctx, a);
        })(),
      );
      expectUntouched(s, addr);
    });
  });

  describe(`dmirror command checks [${protocol}]`, () => {
    it("rejects an unaligned address and npages 0 with EINVAL, for every command", () => {
      const s = setup(protocol);
      const { addr } = buffer(s);
      const page = new Uint8Array(P);
      const commands: [string, (at: number, n: number) => unknown][] = [
        ["READ", (at, n) => s.fd.read(at, n)],
        ["WRITE", (at, n) => s.fd.write(at, n, page)],
        ["MIGRATE_TO_DEV", (at, n) => s.fd.migrateToDevice(at, n)],
        ["MIGRATE_TO_SYS", (at, n) => s.fd.migrateToSystem(at, n)],
        ["SNAPSHOT", (at, n) => s.fd.snapshot(at, n)],
        ["FLAGS", (at, n) => s.fd.setFlags(at, n)],
      ];
      for (const [name, command] of commands) {
        expect(
          errorCode(() => command(addr + 8, 1)),
          `${name} unaligned`,
        ).toBe("EINVAL");
        expect(
          errorCode(() => command(addr, 0)),
          `${name} npages 0`,
        ).toBe("EINVAL");
      }
      expectUntouched(s, addr);
    });

    it("migrations of an unmapped range or a PROT_NONE range fail with EINVAL", () => {
      const s = setup(protocol);
      const { addr } = buffer(s);
      const hole = s.proc.mmap(2 * P);
      s.proc.munmap(hole, 2 * P);
      expect(errorCode(() => s.fd.migrateToDevice(hole, 2))).toBe("EINVAL");
      expect(errorCode(() => s.fd.migrateToSystem(hole, 2))).toBe("EINVAL");
      // A range running from the buffer into the hole after it.
      const tail = addr + (NPAGES - 1) * P;
      expect(s.proc.mm.findVma(tail / P + 1)).toBeNull();
      expect(errorCode(() => s.fd.migrateToDevice(tail, 2))).toBe("EINVAL");
      const none = s.proc.mmap(2 * P, { prot: PROT_NONE });
      expect(errorCode(() => s.fd.migrateToDevice(none, 2))).toBe("EINVAL");
      expect(errorCode(() => s.fd.migrateToSystem(none, 2))).toBe("EINVAL");
      // The chunk inside the buffer may have moved before the hole was found; the data is intact.
      expect(s.proc.checkPages(addr, NPAGES, 11)).toEqual([]);
      expect(s.system.checkInvariants()).toEqual([]);
    });

    it("migrating a MAP_SHARED anonymous buffer fails with ENOENT and leaves it in place (migrate_shared)", () => {
      const s = setup(protocol);
      const addr = s.proc.mmap(NPAGES * P, { flags: MAP_SHARED | MAP_ANONYMOUS });
      expect(errorCode(() => s.fd.migrateToDevice(addr, NPAGES))).toBe("ENOENT");
      s.proc.fillPages(addr, NPAGES, 11);
      expect(errorCode(() => s.fd.migrateToDevice(addr, NPAGES))).toBe("ENOENT");
      expectUntouched(s, addr);
    });
  });
}
