import { describe, expect, it } from "vitest";
import { EINVAL } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  lockPage,
  TMPFS_MAX_BYTES,
  trylockPage,
  unlockPage,
  waitOnPageLocked,
} from "../../src/mm/filemap.js";
import { PG_locked } from "../../src/mm/page.js";
import { DeadlockError } from "../../src/sched/scheduler.js";
import { type Kfn, PREEMPT } from "../../src/sched/thread.js";
import { inThread, kernelError, pageOf, pfnAt, smallSystem } from "./helpers.js";
import { expectFailsUnchanged } from "./syscall-state.js";

const P = PAGE_SIZE;

describe("tmpfs files", () => {
  it("read back what was written, holes as zeros, short at the end of the file", () => {
    const system = smallSystem();
    const file = system.createFile("f", 3 * P);
    expect(file.write(P + 10, Uint8Array.from([1, 2, 3]))).toBe(3);
    expect(file.read(P + 8, 7)).toEqual(Uint8Array.from([0, 0, 1, 2, 3, 0, 0]));
    expect(file.read(0, 4)).toEqual(new Uint8Array(4));
    expect(file.read(3 * P - 2, 10)).toEqual(new Uint8Array(2));
    expect(file.read(3 * P, 10)).toEqual(new Uint8Array(0));
    // Only the written page is in the page cache.
    expect([...file.space.pages.keys()]).toEqual([1]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a write past the end grows the file", () => {
    const system = smallSystem();
    const file = system.createFile("grow");
    expect(file.size).toBe(0);
    file.write(2 * P - 1, Uint8Array.from([7, 8]));
    expect(file.size).toBe(2 * P + 1);
    expect(file.read(2 * P - 1, 4)).toEqual(Uint8Array.from([7, 8]));
  });

  it("refuses negative offsets and sizes with EINVAL, changing nothing", () => {
    const system = smallSystem();
    const file = system.createFile("f", P);
    file.write(0, pageOf(1));
    expect(kernelError(() => file.write(-1, Uint8Array.from([9]))).errno).toBe(EINVAL);
    expect(kernelError(() => file.read(-1, 1)).errno).toBe(EINVAL);
    expect(kernelError(() => system.createFile("bad", -1)).errno).toBe(EINVAL);
    expect(file.read(0, P)).toEqual(pageOf(1));
    expect(file.size).toBe(P);
  });

  it("an access to a mapped page wholly beyond the end of the file is SIGBUS and adds nothing", () => {
    const system = smallSystem();
    const file = system.createFile("short", P + 1);
    const proc = system.spawn();
    const addr = proc.mmap(3 * P, { file });
    proc.writeU32(addr + P, 5); // the partial last page is part of the file
    expect(file.read(P, 1)).toEqual(Uint8Array.from([5]));
    let caught: unknown;
    try {
      proc.readU32(addr + 2 * P);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ signal: "SIGBUS", address: addr + 2 * P });
    expect([...file.space.pages.keys()]).toEqual([1]);
    expect(file.size).toBe(P + 1);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("the page lock", () => {
  it("trylock fails on a locked page; lock_page sleeps until the holder unlocks", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU32(addr, 1);
    const pfn = pfnAt(proc, addr);
    const k = system.kernel;
    k.sched.setChooser((runnable, i) => i % runnable.length);
    const log: string[] = [];
    k.sched.spawn(
      "holder",
      (function* (): Kfn<void> {
        expect(trylockPage(k, pfn)).toBe(true);
        log.push("holder locked");
        for (let i = 0; i < 4; i++) yield PREEMPT;
        log.push("holder unlocks");
        unlockPage(k, pfn);
      })(),
    );
    k.sched.spawn(
      "waiter",
      (function* (): Kfn<void> {
        yield PREEMPT;
        expect(trylockPage(k, pfn)).toBe(false);
        yield* lockPage(k, pfn);
        log.push("waiter locked");
        unlockPage(k, pfn);
      })(),
    );
    k.sched.spawn(
      "watcher",
      (function* (): Kfn<void> {
        yield PREEMPT;
        yield* waitOnPageLocked(k, pfn);
        log.push("watcher saw it unlocked");
      })(),
    );
    k.sched.runAll();
    expect(log[0]).toBe("holder locked");
    expect(log[1]).toBe("holder unlocks");
    expect(log.slice(2).sort()).toEqual(["waiter locked", "watcher saw it unlocked"]);
    expect(k.pages.has(pfn, PG_locked)).toBe(false);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a page left locked is reported by the checker; a deadlock on it names the page lock", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU32(addr, 1);
    const pfn = pfnAt(proc, addr);
    const k = system.kernel;
    inThread(
      system,
      (function* (): Kfn<void> {
        yield* lockPage(k, pfn);
      })(),
    );
    expect(system.checkInvariants()).toEqual([`pfn ${pfn}: locked but no running thread holds it`]);
    let caught: unknown;
    try {
      inThread(
        system,
        (function* (): Kfn<void> {
          yield* lockPage(k, pfn);
        })(),
      );
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DeadlockError);
    const waits = (caught as DeadlockError).waits;
    expect(waits).toHaveLength(1);
    expect(waits[0]).toMatch(new RegExp(`^thread \\d+ "test" waits on page lock of pfn ${pfn}$`));
  });
});

describe("pread and pwrite argument checks (ksys_pread64, vfs_read, rw_verify_area, shmem)", () => {
  it("pread: EINVAL for a negative offset, EFAULT for a length no buffer can have, then the read", () => {
    const system = smallSystem();
    const file = system.createFile("f", P);
    file.write(0, pageOf(3));
    // ksys_pread64: pos < 0 (2^63 and up are negative as a loff_t).
    expectFailsUnchanged(system, "EINVAL", () => file.read(-1, 1), "pos -1");
    expectFailsUnchanged(system, "EINVAL", () => file.read(2 ** 63, 1), "pos 2^63");
    // access_ok: -1 is a count of 2^64 - 1 bytes.
    expectFailsUnchanged(system, "EFAULT", () => file.read(0, -1), "count -1");
    expectFailsUnchanged(system, "EFAULT", () => file.read(0, 2 ** 48), "count 2^48");
    // rw_verify_area: pos + count past the largest loff_t.
    expectFailsUnchanged(system, "EINVAL", () => file.read(2 ** 63 - 2 * P, 4 * P), "pos + count");
    for (const bad of [Number.NaN, 1.5, 1n, "0", null]) {
      expectFailsUnchanged(system, "EINVAL", () => file.read(bad as number, 1), `pos ${String(bad)}`);
      expectFailsUnchanged(system, "EINVAL", () => file.read(0, bad as number), `count ${String(bad)}`);
    }
  });

  it("pread: 0 bytes, or any bytes at or past the end of the file, read nothing (shmem_file_read_iter)", () => {
    const system = smallSystem();
    const file = system.createFile("f", P);
    expect(file.read(0, 0)).toEqual(new Uint8Array(0));
    expect(file.read(P, 0)).toEqual(new Uint8Array(0));
    expect(file.read(10 * P, 0)).toEqual(new Uint8Array(0));
    expect(file.read(10 * P, 5)).toEqual(new Uint8Array(0));
    expect(file.read(2 ** 62, 5)).toEqual(new Uint8Array(0));
    // A huge count is a short read of what the file holds, not a huge buffer.
    expect(file.read(P - 2, 2 ** 33)).toEqual(new Uint8Array(2));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("pwrite: EINVAL for a negative offset, EFAULT for data that is not a Uint8Array, EFBIG at the largest file", () => {
    const system = smallSystem();
    const file = system.createFile("f", P);
    file.write(0, pageOf(3));
    expectFailsUnchanged(system, "EINVAL", () => file.write(-1, Uint8Array.of(1)), "pos -1");
    expectFailsUnchanged(system, "EINVAL", () => file.write(Number.NaN, Uint8Array.of(1)), "pos NaN");
    for (const data of [null, undefined, "abc", [1, 2], new Uint16Array(2), 7]) {
      expectFailsUnchanged(system, "EFAULT", () => file.write(0, data as never), `data ${String(data)}`);
    }
    // generic_write_check_limits with hmmsim's 2^53-byte tmpfs files.
    expectFailsUnchanged(
      system,
      "EFBIG",
      () => file.write(TMPFS_MAX_BYTES, Uint8Array.of(1)),
      "at the limit",
    );
    // Nothing to write is 0, wherever it is.
    expect(file.write(TMPFS_MAX_BYTES, new Uint8Array(0))).toBe(0);
    expect(file.write(0, new Uint8Array(0))).toBe(0);
    expect(file.size).toBe(P);
    // A write that reaches the limit is cut short there.
    expect(file.write(TMPFS_MAX_BYTES - 2, Uint8Array.of(1, 2, 3, 4))).toBe(2);
    expect(file.size).toBe(TMPFS_MAX_BYTES);
    expect(file.read(TMPFS_MAX_BYTES - 2, 4)).toEqual(Uint8Array.of(1, 2));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("createFile: a name that is not a string is EFAULT; the size is ftruncate's (EINVAL, EFBIG)", () => {
    const system = smallSystem();
    expect(kernelError(() => system.createFile(3 as never)).code).toBe("EFAULT");
    expect(kernelError(() => system.createFile("f", -1)).code).toBe("EINVAL");
    expect(kernelError(() => system.createFile("f", 1.5)).code).toBe("EINVAL");
    expect(kernelError(() => system.createFile("f", TMPFS_MAX_BYTES + 2)).code).toBe("EFBIG");
    expect(system.createFile("f", TMPFS_MAX_BYTES).size).toBe(TMPFS_MAX_BYTES);
  });

  it("the tokens store keeps no bytes: pread and pwrite are EOPNOTSUPP and add no page", () => {
    const system = smallSystem({ store: "tokens" });
    const file = system.createFile("f", P);
    expectFailsUnchanged(system, "EOPNOTSUPP", () => file.write(0, Uint8Array.of(1)), "pwrite");
    expectFailsUnchanged(system, "EOPNOTSUPP", () => file.read(0, 1), "pread");
    expect(file.read(0, 0)).toEqual(new Uint8Array(0));
    expect(file.write(0, new Uint8Array(0))).toBe(0);
  });
});
