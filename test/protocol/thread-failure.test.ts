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

  it("a device command that fails inside its thread leaves the device usable (the tokens store)", () => {
    const system = new System({ ram: "8MiB", store: "tokens", devices: [{ memory: "1MiB" }] });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 8);
    // Byte writes cannot work on the tokens store; whatever the refusal, it must not hold the mutex.
    expect(() => fd.write(addr, 1, new Uint8Array(P))).toThrow();
    const back = fd.read(addr, 1);
    expect(back.cpages).toBe(1);
    expect(proc.checkPages(addr, 1, 8)).toEqual([]);
    fd.close();
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
