/**
 * Device-coherent memory (MEMORY_DEVICE_COHERENT, test_hmm.c's devices 2 and 3): the CPU maps it with
 * ordinary PTEs and reads and writes it without a fault; it migrates to and from the device like
 * private memory; fork shares it copy-on-write, copying straight from device memory.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, ENOENT } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
} from "../../src/drivers/dmirror_uapi.js";
import { System, testHmmDevices } from "../../src/system.js";
import { errnoOf } from "../support/errno-of.js";

const PAGES = 16;

function coherentSystem() {
  const system = new System({ ram: "16MiB", devices: testHmmDevices("16MiB") });
  const proc = system.spawn();
  const fd = system.device(2).open(proc);
  const addr = proc.mmap(PAGES * PAGE_SIZE);
  proc.fillPages(addr, PAGES, 11);
  return { system, proc, fd, addr };
}

describe("device-coherent memory", () => {
  it("is read and written by the CPU in place, without a fault, after a migration to the device", () => {
    const { system, proc, fd, addr } = coherentSystem();
    expect(fd.migrateToDevice(addr, PAGES).cpages).toBe(PAGES);
    expect(system.device(2).usedPages).toBe(PAGES);
    const faults = system.kernel.stats.faults;
    const deviceFaults = system.kernel.stats.deviceFaults;
    expect(proc.checkPages(addr, PAGES, 11)).toEqual([]);
    proc.write(addr, new Uint8Array([7, 8, 9]));
    expect(system.kernel.stats.faults).toBe(faults);
    expect(system.kernel.stats.deviceFaults).toBe(deviceFaults);
    // Still on the device: the snapshot says so, and the device reads the CPU's store.
    expect([...fd.snapshot(addr, 1)]).toEqual([HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE]);
    expect([...fd.read(addr, 1).data!.subarray(0, 3)]).toEqual([7, 8, 9]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("shows as remote to the other coherent device and comes back with MIGRATE_TO_SYS, bytes intact", () => {
    const { system, proc, fd, addr } = coherentSystem();
    fd.migrateToDevice(addr, PAGES);
    const other = system.device(3).open(proc);
    expect([...other.snapshot(addr, 2)]).toEqual([
      HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE | HMM_DMIRROR_PROT_WRITE,
      HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE | HMM_DMIRROR_PROT_WRITE,
    ]);
    // Device 3 does not select device 2's pages (SELECT_SYSTEM only), so they are not its to mirror.
    expect(errnoOf(() => other.migrateToDevice(addr, PAGES))).toBe(ENOENT);
    expect(fd.migrateToSystem(addr, PAGES).cpages).toBe(PAGES);
    expect(system.device(2).usedPages).toBe(0);
    expect([...fd.snapshot(addr, 1)]).toEqual([HMM_DMIRROR_PROT_WRITE]);
    expect(proc.checkPages(addr, PAGES, 11)).toEqual([]);
    other.close();
    expect(system.checkInvariants()).toEqual([]);
  });

  it("is shared copy-on-write by fork: each side's writes stay its own", () => {
    const { system, proc, fd, addr } = coherentSystem();
    fd.migrateToDevice(addr, PAGES);
    const child = proc.fork();
    // Both map the device pages read-only now.
    expect([...fd.snapshot(addr, 1)]).toEqual([HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_READ]);
    child.write(addr, new Uint8Array(PAGE_SIZE).fill(0xaa));
    proc.write(addr + PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(0x55));
    // checkPages lists the pages that no longer hold the values fillPages wrote.
    expect(proc.checkPages(addr, PAGES, 11)).toEqual([1]);
    expect(child.checkPages(addr, PAGES, 11)).toEqual([0]);
    expect(child.read(addr, 1)[0]).toBe(0xaa);
    expect(proc.read(addr + PAGE_SIZE, 1)[0]).toBe(0x55);
    // The copies went to RAM; the pages nobody wrote are still on the device, shared.
    expect([...fd.snapshot(addr, 3)]).toEqual([
      HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_READ,
      HMM_DMIRROR_PROT_WRITE,
      HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_READ,
    ]);
    expect(system.checkInvariants()).toEqual([]);
    child.exit();
    proc.munmap(addr, PAGES * PAGE_SIZE);
    fd.close();
    expect(system.device(2).usedPages).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("is evicted to RAM by HMM_DMIRROR_RELEASE and by the last close", () => {
    const { system, proc, fd, addr } = coherentSystem();
    fd.migrateToDevice(addr, PAGES);
    fd.release(addr, 1);
    expect(system.device(2).usedPages).toBe(0);
    expect(proc.checkPages(addr, PAGES, 11)).toEqual([]);
    fd.migrateToDevice(addr, PAGES);
    fd.close();
    expect(system.device(2).usedPages).toBe(0);
    expect(proc.checkPages(addr, PAGES, 11)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("moves to RAM for a long-term pin, and stays put (and unmigratable) under a short-term one", () => {
    const { system, proc, fd, addr } = coherentSystem();
    fd.migrateToDevice(addr, PAGES);
    const coherentPfn = proc.pinPages(addr, 1, true)[0]!;
    expect(system.kernel.pages.isDeviceCoherent(coherentPfn)).toBe(true);
    // A pinned page fails migrate_vma's pin check: MIGRATE_TO_SYS leaves it on the device.
    expect(fd.migrateToSystem(addr, 1).cpages).toBe(0);
    proc.unpinPages([coherentPfn]);
    const pinned = proc.pinPages(addr + PAGE_SIZE, 2, true, true);
    for (const pfn of pinned) expect(system.kernel.pages.isZoneDevice(pfn)).toBe(false);
    expect([...fd.snapshot(addr, 4)]).toEqual([
      HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE,
      HMM_DMIRROR_PROT_WRITE,
      HMM_DMIRROR_PROT_WRITE,
      HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE,
    ]);
    expect(system.checkInvariants()).toEqual([]);
    proc.unpinPages(pinned);
    expect(proc.checkPages(addr, PAGES, 11)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("exists only under modern (MEMORY_DEVICE_COHERENT came with 6.0); other kinds are refused", () => {
    for (const protocol of ["seed", "4.14"] as const)
      expect(errnoOf(() => new System({ protocol, devices: testHmmDevices("4MiB") }))).toBe(EINVAL);
    expect(errnoOf(() => new System({ devices: [{ memory: "4MiB", type: "fabric" as "private" }] }))).toBe(
      EINVAL,
    );
    const system = new System({ devices: testHmmDevices("4MiB") });
    expect(system.devices.map((device) => device.type)).toEqual([
      "private",
      "private",
      "coherent",
      "coherent",
    ]);
  });
});
