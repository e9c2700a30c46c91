/**
 * Every DeviceFile method checks its arguments as dmirror_fops_unlocked_ioctl and the command do, and
 * answers misuse with the errno of the kernel path, never a TypeError or RangeError; a refused call
 * changes nothing. And no failure leaves the dmirror mutex held (item 7 of issue 8: a WRITE in the
 * tokens store used to throw inside its thread holding it, and every later command deadlocked).
 */
import { describe, expect, it } from "vitest";
import { EFAULT, EINVAL, ENOENT, ENOMEM, KernelError } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_WRITE,
} from "../../src/drivers/dmirror.js";
import { NoBytesError } from "../../src/mm/page_store.js";
import { System } from "../../src/system.js";

const P = PAGE_SIZE;
// A writable RAM page: HMM_DMIRROR_PROT_NONE | HMM_DMIRROR_PROT_WRITE (dmirror_mkentry sets READ or WRITE).
const RW = HMM_DMIRROR_PROT_WRITE;

function build(store: "bytes" | "tokens" = "bytes") {
  const system = new System({ ram: "8MiB", store, devices: [{ memory: "1MiB" }, { memory: "1MiB" }] });
  const proc = system.spawn();
  const addr = proc.mmap(4 * P);
  proc.fillPages(addr, 4, 1);
  return { system, proc, addr, fd: system.device(0).open(proc) };
}

function errnoOf(body: () => unknown): number {
  try {
    body();
  } catch (error) {
    if (error instanceof KernelError) return error.errno;
    throw error;
  }
  expect.fail("expected a KernelError");
}

/** What a failed call must leave as it was: the CPU's data, the snapshot codes, the invariants. */
function unchanged(setup: ReturnType<typeof build>): void {
  const { system, proc, addr, fd } = setup;
  expect(proc.checkPages(addr, 4, 1)).toEqual([]);
  expect([...fd.snapshot(addr, 4)]).toEqual([RW, RW, RW, RW]);
  expect(system.device(0).usedPages).toBe(0);
  expect(system.checkInvariants()).toEqual([]);
}

describe("cmd.addr and cmd.npages (dmirror_fops_unlocked_ioctl)", () => {
  // `cmd.addr & ~PAGE_MASK` and `cmd.addr >= cmd.addr + (cmd.npages << PAGE_SHIFT)`, in u64.
  it("an unaligned addr, no pages, or a range past 2^64 give EINVAL", () => {
    const setup = build();
    const { fd, addr } = setup;
    for (const call of [
      (a: number, n: number) => fd.read(a, n),
      (a: number, n: number) => fd.write(a, n, new Uint8Array(4 * P)),
      (a: number, n: number) => fd.migrateToDevice(a, n),
      (a: number, n: number) => fd.migrateToSystem(a, n),
      (a: number, n: number) => fd.snapshot(a, n),
      (a: number, n: number) => fd.setFlags(a, n),
      (a: number, n: number) => fd.release(a, n),
    ]) {
      expect(errnoOf(() => call(addr + 1, 1))).toBe(EINVAL);
      expect(errnoOf(() => call(addr, 0))).toBe(EINVAL);
      // npages << 12 is 2^64, which wraps to 0: addr >= addr + 0.
      expect(errnoOf(() => call(addr, 2 ** 52))).toBe(EINVAL);
      // addr + size wraps past 2^64 below addr.
      expect(errnoOf(() => call(2 ** 64 - P, 1))).toBe(EINVAL);
    }
    unchanged(setup);
  });

  it("a page count whose size wraps modulo 2^64 works on what is left: 2^52 + 1 pages is one page", () => {
    const { fd, addr } = build();
    const one = fd.read(addr, 2 ** 52 + 1);
    expect(one.cpages).toBe(1);
    expect(one.words).toHaveLength(1);
    expect(fd.snapshot(addr, 2 ** 52 + 2)).toHaveLength(2);
  });

  // A u64 is what an ioctl caller can pass; a JavaScript caller can pass anything else too.
  it("values that are not u64s get EINVAL, never a TypeError or RangeError", () => {
    const setup = build();
    const { fd, addr } = setup;
    for (const bad of [
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      -P,
      2 ** 64,
      "4096",
      4096n,
      null,
      undefined,
      {},
    ]) {
      const value = bad as number;
      expect(errnoOf(() => fd.read(value, 1))).toBe(EINVAL);
      expect(errnoOf(() => fd.read(addr, value))).toBe(EINVAL);
      expect(errnoOf(() => fd.snapshot(addr, value))).toBe(EINVAL);
      expect(errnoOf(() => fd.migrateToDevice(value, 4))).toBe(EINVAL);
      // (An omitted flags argument is the default, FAIL_ALLOC.)
      if (bad !== undefined) expect(errnoOf(() => fd.setFlags(addr, value))).toBe(EINVAL);
    }
    unchanged(setup);
  });

  it("addresses above TASK_SIZE are u64s: READ faults (EFAULT), MIGRATE finds no VMA (EINVAL), SNAPSHOT says ERROR", () => {
    const { fd } = build();
    const high = 2 ** 60;
    expect(errnoOf(() => fd.read(high, 1))).toBe(EFAULT);
    expect(errnoOf(() => fd.migrateToDevice(high, 1))).toBe(EINVAL);
    expect([...fd.snapshot(high, 2)]).toEqual([HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_ERROR]);
  });
});

describe("sizes", () => {
  // dmirror_bounce_init: vmalloc fails, __vmalloc_node_range refusing a size above totalram_pages().
  it("READ and WRITE of 2^40 pages give ENOMEM from the bounce buffer", () => {
    const setup = build();
    const { fd, addr } = setup;
    expect(errnoOf(() => fd.read(addr, 2 ** 40))).toBe(ENOMEM);
    expect(errnoOf(() => fd.write(addr, 2 ** 40, new Uint8Array(P)))).toBe(ENOMEM);
    unchanged(setup);
  });

  // dmirror_migrate_to_device migrates chunk by chunk and only then allocates the read-back's bounce.
  it("MIGRATE_TO_DEV larger than RAM migrates, then its read-back gives ENOMEM", () => {
    const system = new System({ ram: "1MiB", devices: [{ memory: "2MiB" }] });
    const proc = system.spawn();
    const ramPages = system.kernel.ram.ramPages;
    const addr = proc.mmap((ramPages + 1) * P);
    proc.fillPages(addr, 4, 1);
    const fd = system.device(0).open(proc);
    expect(errnoOf(() => fd.migrateToDevice(addr, ramPages + 1))).toBe(ENOMEM);
    expect(fd.snapshot(addr, 1)[0]).toBe(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE);
    expect(proc.checkPages(addr, 4, 1)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  // dmirror_migrate_to_device: the loop migrates the VMA's chunk, then vma_lookup fails past it.
  it("MIGRATE_TO_DEV of 2^40 pages from a mapped address migrates the VMA, then gives EINVAL at the hole", () => {
    const { system, fd, addr, proc } = build();
    expect(errnoOf(() => fd.migrateToDevice(addr, 2 ** 40))).toBe(EINVAL);
    expect(system.device(0).usedPages).toBe(4);
    expect(proc.checkPages(addr, 4, 1)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  // dmirror_snapshot copies 32 codes at a time straight to the user buffer: no bounce to fail, but a
  // buffer that cannot hold the codes fails copy_to_user.
  it("SNAPSHOT of 2^40 pages gives EFAULT: no buffer can hold the codes", () => {
    const setup = build();
    expect(errnoOf(() => setup.fd.snapshot(setup.addr, 2 ** 40))).toBe(EFAULT);
    unchanged(setup);
  });
});

describe("buffers (cmd->ptr): copy_from_user and copy_to_user fail with EFAULT", () => {
  it("READ into null, a string, another type or a short buffer gives EFAULT and writes nothing", () => {
    const setup = build();
    const { fd, addr } = setup;
    const short = new Uint8Array(4 * P - 1).fill(9);
    for (const bad of [null, "mirror", new Uint32Array(4 * P), short]) {
      expect(errnoOf(() => fd.read(addr, 4, bad as Uint8Array))).toBe(EFAULT);
    }
    expect(short.every((byte) => byte === 9)).toBe(true);
    // Refused before dmirror_fault ran: nothing was mirrored.
    expect(fd.mirror.pt.size).toBe(0);
    unchanged(setup);
  });

  it("WRITE from null, a string or a short buffer gives EFAULT and writes nothing", () => {
    const setup = build();
    const { fd, addr } = setup;
    for (const bad of [null, undefined, "data", new Uint8Array(4 * P - 1)]) {
      expect(errnoOf(() => fd.write(addr, 4, bad as Uint8Array))).toBe(EFAULT);
    }
    unchanged(setup);
  });

  it("MIGRATE_TO_DEV and SNAPSHOT refuse a bad buffer before migrating or copying anything", () => {
    const setup = build();
    const { fd, addr } = setup;
    expect(errnoOf(() => fd.migrateToDevice(addr, 4, new Uint8Array(P)))).toBe(EFAULT);
    expect(errnoOf(() => fd.migrateToDevice(addr, 4, null))).toBe(EFAULT);
    const codes = new Uint8Array(3).fill(7);
    expect(errnoOf(() => fd.snapshot(addr, 4, codes))).toBe(EFAULT);
    expect([...codes]).toEqual([7, 7, 7]);
    expect(errnoOf(() => fd.snapshot(addr, 4, "codes" as unknown as Uint8Array))).toBe(EFAULT);
    unchanged(setup);
  });

  // dmirror_read copies the bounce buffer to cmd->ptr only when ret == 0.
  it("READ writes the caller's buffer only when it succeeds", () => {
    const setup = build();
    const { proc, fd, addr } = setup;
    const into = new Uint8Array(4 * P).fill(0xee);
    const ok = fd.read(addr, 4, into);
    expect(ok.data).toBe(into);
    expect(new Uint32Array(into.buffer)[0]).toBe(ok.words[0]);
    // Pages 0 and 1 are mirrored, pages 2 and 3 are PROT_NONE: dmirror_do_read copies the first two
    // into the bounce buffer, then dmirror_fault fails with -EFAULT, and nothing reaches cmd->ptr.
    const kept = new Uint8Array(4 * P).fill(0xee);
    proc.mprotect(addr + 2 * P, 2 * P, 0);
    expect(errnoOf(() => fd.read(addr, 4, kept))).toBe(EFAULT);
    expect(kept.every((byte) => byte === 0xee)).toBe(true);
  });
});

describe("the tokens store has no bytes", () => {
  it("WRITE gives NoBytesError before its thread starts, and the device keeps working", () => {
    const setup = build("tokens");
    const { fd, addr } = setup;
    expect(() => fd.write(addr, 4, new Uint8Array(4 * P))).toThrow(NoBytesError);
    expect(() => fd.write(addr, 4, "x" as unknown as Uint8Array)).toThrow(NoBytesError);
    expect(() => fd.read(addr, 4, new Uint8Array(4 * P))).toThrow(NoBytesError);
    expect(() => fd.migrateToDevice(addr, 4, new Uint8Array(4 * P))).toThrow(NoBytesError);
    expect(fd.mirror.mutex.locked).toBe(false);
    unchanged(setup);
    // No lock was left held: every later command runs.
    expect(fd.read(addr, 4).cpages).toBe(4);
    expect(fd.migrateToDevice(addr, 4).cpages).toBe(4);
    expect(fd.migrateToSystem(addr, 4).cpages).toBe(4);
    expect(setup.proc.checkPages(addr, 4, 1)).toEqual([]);
    expect(setup.system.checkInvariants()).toEqual([]);
  });
});

describe("HMM_DMIRROR_FLAGS", () => {
  // dmirror->flags = cmd.npages, a u64; HMM_DMIRROR_FLAG_FAIL_ALLOC is bit 0.
  it("stores the u64: 2^32 + 1 has FAIL_ALLOC set, 2 does not", () => {
    const { system, fd, addr } = build();
    fd.setFlags(addr, 2);
    expect(fd.migrateToDevice(addr, 1).cpages).toBe(1);
    fd.setFlags(addr, 2 ** 32 + 1);
    // The allocation fails once: the page stays in RAM and the read-back finds it unmirrored.
    expect(errnoOf(() => fd.migrateToDevice(addr + P, 1))).toBe(ENOENT);
    expect(fd.migrateToDevice(addr + P, 1).cpages).toBe(1);
    expect(system.checkInvariants()).toEqual([]);
  });
});
