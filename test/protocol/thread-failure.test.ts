/**
 * A kernel thread that fails (an assertion, a thrown error: the model's kernel BUG) releases every lock
 * it holds, so that one failure does not deadlock every later call; a thread that returns holding a lock
 * is a bug the invariant checker names.
 */
import { describe, expect, it } from "vitest";
import { trylockPage } from "../../src/mm/filemap.js";
import { ThreadFailure } from "../../src/sched/scheduler.js";
import type { Kfn } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";
import { P, pfnAt, setup } from "./helpers.js";

function failureOf(run: () => unknown): ThreadFailure {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ThreadFailure);
    return error as ThreadFailure;
  }
  throw new Error("expected a ThreadFailure");
}

describe("thread failure", () => {
  it("releases the page locks and the mmap_lock the thread held, and the system keeps working", () => {
    const { system, proc } = setup("modern");
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 5);
    const pfn = pfnAt(proc, addr);
    const k = system.kernel;
    const failure = failureOf(() =>
      k.sched.call(
        "doomed",
        (function* (): Kfn<void> {
          yield* proc.mm.mmapLock.downRead();
          expect(trylockPage(k, pfn)).toBe(true);
          throw new Error("BUG at mm/somewhere.c");
        })(),
      ),
    );
    expect([...failure.released].sort()).toEqual([
      `mmap_lock of mm ${proc.mm.id} (read)`,
      `page lock of pfn ${pfn}`,
    ]);
    expect(system.checkInvariants()).toEqual([]);
    // Both are free again: a write fault takes mmap_lock, munmap takes it for write.
    proc.fillPages(addr, 1, 6);
    expect(proc.checkPages(addr, 1, 6)).toEqual([]);
    proc.munmap(addr, P);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a device command whose thread fails holding the dmirror mutex leaves the device usable", () => {
    const { system, proc, fd } = setup("modern");
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 8);
    // A WRITE mirrors the page writable; then the kernel-level command, handed what DeviceFile would
    // have refused up front (something with a length but no bytes), throws in its copy, inside the
    // mirror's critical section.
    const data = new Uint8Array(P);
    new DataView(data.buffer).setUint32(0, 8, true);
    expect(fd.write(addr, 1, data).cpages).toBe(1);
    const notBytes = { length: P } as unknown as Uint8Array;
    const failure = failureOf(() =>
      system.kernel.sched.call("WRITE with no bytes", fd.mirror.cmdWrite(addr / P, 1, notBytes)),
    );
    expect(failure.released).toContain(`dmirror 0 open ${fd.mirror.id} mutex`);
    const back = fd.read(addr, 1);
    expect(back.cpages).toBe(1);
    expect(back.words[0]).toBe(8);
    fd.close();
    expect(system.checkInvariants()).toEqual([]);
  });

  it("DeviceFile refuses a byte command on the tokens store up front (EOPNOTSUPP), before any thread", () => {
    const system = new System({ ram: "8MiB", store: "tokens", devices: [{ memory: "1MiB" }] });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 8);
    expect(() => fd.write(addr, 1, new Uint8Array(P))).toThrow(/EOPNOTSUPP/);
    expect(fd.read(addr, 1).cpages).toBe(1);
    expect(proc.checkPages(addr, 1, 8)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("the checker names a lock whose holder returned without releasing it", () => {
    const { system, fd } = setup("modern");
    const k = system.kernel;
    const mutex = fd.mirror.mutex;
    const leaker = k.sched.spawn(
      "leaker",
      (function* (): Kfn<void> {
        yield* mutex.lock();
      })(),
    );
    k.sched.runAll();
    expect(system.checkInvariants()).toEqual([
      `lock held by a thread that no longer runs: dmirror 0 open ${fd.mirror.id} mutex held by ${leaker}, which no longer runs`,
    ]);
  });
});

describe("tracked locks", () => {
  it("stay bounded while processes and device files come and go", () => {
    const { system } = setup("modern");
    const sched = system.kernel.sched;
    const before = sched.trackedLockCount;
    for (let i = 0; i < 50; i++) {
      const proc = system.spawn();
      const fd = system.device(0).open(proc);
      const child = proc.fork();
      fd.close();
      child.exit();
      proc.exit();
    }
    expect(sched.trackedLockCount).toBe(before);
    expect(system.checkInvariants()).toEqual([]);
  });
});
