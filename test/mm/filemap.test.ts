import { describe, expect, it } from "vitest";
import { EINVAL } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { lockPage, trylockPage, unlockPage, waitOnPageLocked } from "../../src/mm/filemap.js";
import { PG_locked } from "../../src/mm/page.js";
import { DeadlockError } from "../../src/sched/scheduler.js";
import { type Kfn, PREEMPT } from "../../src/sched/thread.js";
import { inThread, kernelError, pageOf, pfnAt, smallSystem } from "./helpers.js";

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
