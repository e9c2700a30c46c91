/**
 * The device half of the checker (src/explore/mirror_invariants.ts) names, in its own words, each way a
 * dmirror's state can go wrong. The states are made by hand here, as a buggy driver would leave them.
 */
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "../../src/base/units.js";
import { entryPfn } from "../../src/drivers/dmirror.js";
import type { Kfn } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";

const P = PAGE_SIZE;

function build() {
  const system = new System({ ram: "8MiB", devices: [{ memory: "1MiB" }] });
  const proc = system.spawn();
  const addr = proc.mmap(2 * P);
  proc.fillPages(addr, 2, 1);
  const fd = system.device(0).open(proc);
  fd.read(addr, 2);
  return { system, proc, addr, fd, vpn: addr / P };
}

describe("mirror invariants", () => {
  it("a writable mirror entry where the CPU mapping is read-only", () => {
    const { system, proc, addr, fd, vpn } = build();
    proc.mprotect(addr, 2 * P, 1); // PROT_READ: erases the entries, as the invalidation must
    expect(system.checkInvariants()).toEqual([]);
    const pfn =
      system.kernel.pt.read(proc.mm.root, vpn) >= 0 ? fd.read(addr, 1) && fd.mirror.pt.get(vpn) >> 2 : 0;
    fd.mirror.pt.set(vpn, pfn * 4 + 3);
    expect(system.checkInvariants()).toEqual([
      `stale device mirror entry: dmirror 0 open 1 (mm ${proc.mm.id}) maps vpn 0x${vpn.toString(16)} to pfn ${pfn} writable where the CPU mapping is read-only`,
    ]);
  });

  it("a mirror entry where the CPU maps nothing, and one that outlives its mm", () => {
    const { system, proc, addr, fd, vpn } = build();
    const pfn = entryPfn(fd.mirror.pt.get(vpn));
    proc.munmap(addr, 2 * P);
    fd.mirror.pt.set(vpn, pfn * 4);
    const lines = system.checkInvariants();
    expect(lines.some((line) => line.includes("where the CPU maps nothing accessible"))).toBe(true);
    // A forked child keeps the file open after its opener exits.
    expect(proc.fork().files).toHaveLength(1);
    proc.exit();
    fd.mirror.pt.set(vpn, pfn * 4);
    expect(system.checkInvariants().some((line) => line.endsWith("but that mm has exited"))).toBe(true);
  });

  it("a driver lock held by a thread that has finished", () => {
    const { system, fd, proc } = build();
    system.kernel.sched.call(
      "leaks the mutex",
      (function* (): Kfn<void> {
        yield* fd.mirror.mutex.lock();
      })(),
    );
    expect(system.checkInvariants()).toEqual([
      expect.stringMatching(
        /^lock held by a thread that no longer runs: dmirror 0 open 1 mutex held by thread \d+ "leaks the mutex", which no longer runs$/,
      ),
    ]);
  });

  it("a device page neither in use nor on the free list", () => {
    const { system, fd, addr } = build();
    expect(fd.migrateToDevice(addr, 2).cpages).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
    const chunk = system.device(0).driver.chunks[0]!;
    chunk.pagesInUse++;
    expect(system.checkInvariants()).toEqual([
      `dmirror 0 chunk (pagemap ${chunk.id}): 2 pages have references but the pagemap counts 3 in use`,
    ]);
    chunk.pagesInUse--;
  });
});
