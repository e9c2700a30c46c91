/**
 * Argument checks of the migration entry points and of the dmirror commands: each bad argument gives
 * -EINVAL (or the command's errno) and changes nothing.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, KernelError } from "../../src/base/errno.js";
import { TASK_SIZE } from "../../src/base/units.js";
import { HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_WRITE } from "../../src/drivers/dmirror.js";
import { type MigrateVmaArgs, migrateVmaFinalize, migrateVmaSetup } from "../../src/mm/migrate_device.js";
import { MIGRATE_VMA_SELECT_SYSTEM } from "../../src/mm/migrate_pfn.js";
import { type MigrateVmaOps, migrateVma } from "../../src/mm/migrate_vma.js";
import { VM_HUGETLB, VM_IO, VM_MIXEDMAP, VM_PFNMAP, Vma } from "../../src/mm/mm_types.js";
import { MADV_DONTNEED, MAP_ANONYMOUS, MAP_SHARED, PROT_NONE } from "../../src/mm/mmap.js";
import { NoBytesError } from "../../src/mm/page_store.js";
import { SignalError } from "../../src/process.js";
import type { Kfn } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";
import { expectFailsUnchanged, stateOf } from "../mm/syscall-state.js";
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

/**
 * The Process surface: every argument passes through the C ABI of src/base/abi.ts, CPU accesses answer
 * as the MMU does, and an exited process answers ESRCH. Every failure is a KernelError (SignalError is
 * one) and changes nothing.
 */
describe("Process arguments: CPU accesses", () => {
  function mapped() {
    const system = new System({ ram: "16MiB" });
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.write(addr, new Uint8Array(2 * P).fill(9));
    return { system, proc, addr };
  }

  it("a zero-length access touches nothing and succeeds wherever it points", () => {
    const { system, proc } = mapped();
    const before = stateOf(system);
    for (const at of [0, 0x1000, -P, 2 ** 60, TASK_SIZE]) {
      expect(proc.read(at, 0)).toEqual(new Uint8Array(0));
      proc.write(at, new Uint8Array(0));
    }
    proc.touch(0, 0, true);
    proc.fillPages(0, 0, 1);
    expect(proc.checkPages(0, 0, 1)).toEqual([]);
    expect(stateOf(system)).toEqual(before);
  });

  it("an access that leaves user space is SIGSEGV at the first byte outside, before anything faults", () => {
    const { system, proc, addr } = mapped();
    // -1 bytes is 2^64 - 1: the read runs past the mapping (and past user space) and faults at its end.
    const past = signal(() => proc.read(addr, -1));
    expect([past.signal, past.address]).toEqual(["SIGSEGV", addr + 2 * P]);
    const below = signal(() => proc.read(-P, 8));
    expect([below.signal, below.address]).toEqual(["SIGSEGV", -P]);
    expectFailsUnchanged(system, "SIGSEGV", () => proc.read(addr, 2 ** 33), "8 GiB over 2 pages");
    expectFailsUnchanged(system, "SIGSEGV", () => proc.touch(addr, 2 ** 60, true), "touch 2^60 pages");
    expectFailsUnchanged(system, "SIGSEGV", () => proc.fillPages(addr, -1, 1), "fillPages -1 pages");
  });

  it("a read longer than MAX_RW_COUNT of mapped memory is ENOMEM (hmmsim's own limit), not a RangeError", () => {
    const system = new System({ ram: "16MiB" });
    const proc = system.spawn();
    const addr = proc.mmap(2 ** 33);
    expectFailsUnchanged(system, "ENOMEM", () => proc.read(addr, 2 ** 33), "8 GiB read");
    expectFailsUnchanged(system, "ENOMEM", () => proc.read(addr, 0x7ffff000 + 1), "MAX_RW_COUNT + 1");
  });

  it("values no register holds are EINVAL; a buffer that is not a Uint8Array is EFAULT", () => {
    const { system, proc, addr } = mapped();
    for (const bad of [Number.NaN, 1.5, Number.POSITIVE_INFINITY, 2 ** 64, 8n, "8", null, undefined]) {
      const v = bad as number;
      expectFailsUnchanged(system, "EINVAL", () => proc.read(v, 1), `read at ${String(bad)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.read(addr, v), `read ${String(bad)} bytes`);
      expectFailsUnchanged(
        system,
        "EINVAL",
        () => proc.write(v, new Uint8Array(1)),
        `write at ${String(bad)}`,
      );
      expectFailsUnchanged(system, "EINVAL", () => proc.writeU32(addr, v), `writeU32 ${String(bad)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.touch(addr, v, false), `touch ${String(bad)} pages`);
      expectFailsUnchanged(
        system,
        "EINVAL",
        () => proc.fillPages(addr, 1, v),
        `fillPages seed ${String(bad)}`,
      );
    }
    for (const data of [null, "abc", [1, 2, 3], new Int8Array(2), { length: 1 }]) {
      expectFailsUnchanged(system, "EFAULT", () => proc.write(addr, data as never), `write ${String(data)}`);
    }
    expectFailsUnchanged(system, "EINVAL", () => proc.writeU64(addr, 1.5 as never), "writeU64 1.5");
    expectFailsUnchanged(system, "EINVAL", () => proc.writeU64(addr, 1n << 64n), "writeU64 2^64");
    expectFailsUnchanged(system, "EINVAL", () => proc.touch(addr, 1, 1 as never), "touch write 1");
    expectFailsUnchanged(system, "EINVAL", () => proc.fillPages(addr + 8, 1, 1), "fillPages unaligned");
  });

  it("stores convert as C does: the low 32 or 64 bits of any 64-bit integer; writeU64 takes numbers too", () => {
    const { system, proc, addr } = mapped();
    proc.writeU32(addr, 2 ** 32 + 5);
    expect(proc.readU32(addr)).toBe(5);
    proc.writeU32(addr, -1);
    expect(proc.readU32(addr)).toBe(0xffff_ffff);
    proc.writeU64(addr, 5);
    expect(proc.readU64(addr)).toBe(5n);
    proc.writeU64(addr, -1n);
    expect(proc.readU64(addr)).toBe((1n << 64n) - 1n);
    proc.writeU64(addr, 2 ** 53 + 2);
    expect(proc.readU64(addr)).toBe(2n ** 53n + 2n);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("byte accesses on the tokens store are EOPNOTSUPP, a KernelError", () => {
    const system = new System({ ram: "16MiB", store: "tokens" });
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 3);
    const error = kernelErrorOf(() => proc.read(addr, 4));
    expect(error).toBeInstanceOf(NoBytesError);
    expect(error.code).toBe("EOPNOTSUPP");
    expectFailsUnchanged(system, "EOPNOTSUPP", () => proc.write(addr, new Uint8Array(4)), "write");
  });
});

describe("Process arguments: an exited process", () => {
  it("every call gives ESRCH, a second exit included; unpinPages still drops a pin it left", () => {
    const system = new System({ ram: "16MiB" });
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.fillPages(addr, 2, 1);
    const pinned = proc.pinPages(addr, 1, true);
    proc.exit();
    const calls: [string, () => unknown][] = [
      ["mmap", () => proc.mmap(P)],
      ["munmap", () => proc.munmap(addr, P)],
      ["mprotect", () => proc.mprotect(addr, P, PROT_NONE)],
      ["mremap", () => proc.mremap(addr, P, 2 * P)],
      ["madvise", () => proc.madvise(addr, P, MADV_DONTNEED)],
      ["fork", () => proc.fork()],
      ["exit", () => proc.exit()],
      ["read", () => proc.read(addr, 1)],
      ["write", () => proc.write(addr, new Uint8Array(1))],
      ["readU32", () => proc.readU32(addr)],
      ["writeU32", () => proc.writeU32(addr, 1)],
      ["readU64", () => proc.readU64(addr)],
      ["writeU64", () => proc.writeU64(addr, 1n)],
      ["fillPages", () => proc.fillPages(addr, 1, 1)],
      ["checkPages", () => proc.checkPages(addr, 1, 1)],
      ["touch", () => proc.touch(addr, 1, false)],
      ["pinPages", () => proc.pinPages(addr, 1, false)],
    ];
    for (const [name, call] of calls) expectFailsUnchanged(system, "ESRCH", call, name);
    expect(proc.exited).toBe(true);
    proc.unpinPages(pinned);
    expect(system.gup.pins.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });
});

function signal(call: () => unknown): SignalError {
  const error = kernelErrorOf(call);
  expect(error).toBeInstanceOf(SignalError);
  return error as SignalError;
}

function kernelErrorOf(call: () => unknown): KernelError {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(KernelError);
    return error as KernelError;
  }
  throw new Error("the call succeeded");
}
