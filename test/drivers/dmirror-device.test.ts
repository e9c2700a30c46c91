import { describe, expect, it } from "vitest";
import {
  DEVMEM_CHUNK_PAGES,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_WRITE,
} from "../../src/drivers/dmirror.js";
import { pteFrame, ptePresent } from "../../src/mm/pgtable.js";
import { System } from "../../src/system.js";

describe("dmirror device memory", () => {
  it("hands out the lowest free device page first, and a freed page before higher ones", () => {
    const system = new System({ ram: "4MiB", store: "tokens", devices: [{ memory: "1MiB" }] });
    const proc = system.spawn();
    const addr = proc.mmap(8 * 4096);
    proc.fillPages(addr, 8, 5);
    const fd = system.device(0).open(proc);
    expect(fd.migrateToDevice(addr, 8).cpages).toBe(8);
    const device = system.device(0).driver;
    const first = device.chunks[0]!.startPfn;
    const pfns = Array.from({ length: 8 }, (_, i) => system.kernel.pt.read(proc.mm.root, addr / 4096 + i));
    const framesOf = (ptes: number[]) => ptes.map(pteFrame);
    expect(framesOf(pfns)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => first + i));
    // Pages 2 and 5 come back to RAM, freeing their device frames; the next two to go out take them.
    expect(fd.migrateToSystem(addr + 2 * 4096, 1).cpages).toBe(1);
    expect(fd.migrateToSystem(addr + 5 * 4096, 1).cpages).toBe(1);
    expect(fd.migrateToDevice(addr + 5 * 4096, 1).cpages).toBe(1);
    expect(fd.migrateToDevice(addr + 2 * 4096, 1).cpages).toBe(1);
    const again = framesOf([2, 5].map((i) => system.kernel.pt.read(proc.mm.root, addr / 4096 + i)));
    expect(again).toEqual([first + 5, first + 2]);
    expect(proc.checkPages(addr, 8, 5)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("dmirror device memory grows in chunks (dmirror_allocate_chunk)", () => {
  // dmirror_device_init allocates one chunk before the device is used; dmirror_devmem_alloc_page adds
  // another when the free list is empty.
  it("starts with one chunk per device and adds one each time the free list runs out", () => {
    const system = new System({ ram: "16MiB", store: "tokens" });
    for (const device of system.devices) expect(device.driver.chunks).toHaveLength(1);
    const proc = system.spawn();
    const npages = DEVMEM_CHUNK_PAGES * 2 + 1;
    const addr = proc.mmap(npages * 4096);
    proc.fillPages(addr, npages, 3);
    const fd = system.device(0).open(proc);
    expect(fd.migrateToDevice(addr, npages).cpages).toBe(npages);
    expect(system.device(0).driver.chunks).toHaveLength(3);
    expect(system.device(1).driver.chunks).toHaveLength(1);
    expect(proc.checkPages(addr, npages, 3)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("memory never used costs nothing: a default device (1 GiB) maps one chunk of pfns", () => {
    const system = new System({ ram: "16MiB" });
    expect(system.device(0).driver.limitPages).toBe(262144);
    expect(system.device(0).driver.mappedPages).toBe(DEVMEM_CHUNK_PAGES);
    expect(system.kernel.pages.capacity).toBeLessThan(2 * system.kernel.ram.ramPages);
  });

  // hmm-tests' benchmark_thp_migration migrates buffers of up to 256 MiB to one device.
  it("a default device takes a 256 MiB migration, as hmm-tests' benchmark does", () => {
    const system = new System({ ram: "300MiB", store: "tokens" });
    const proc = system.spawn();
    const npages = (256 * 2 ** 20) / 4096;
    const addr = proc.mmap(npages * 4096);
    proc.fillPages(addr, npages, 4);
    const fd = system.device(0).open(proc);
    expect(fd.migrateToDevice(addr, npages).cpages).toBe(npages);
    expect(system.device(0).usedPages).toBe(npages);
    expect(fd.migrateToSystem(addr, npages).cpages).toBe(npages);
    expect(proc.checkPages(addr, npages, 4)).toEqual([]);
    fd.close();
  });

  it("stops at the limit: pages past it stay in RAM and the read-back gives ENOENT", () => {
    const system = new System({ ram: "16MiB", store: "tokens", devices: [{ memory: "3MiB" }] });
    const proc = system.spawn();
    const addr = proc.mmap(1024 * 4096);
    proc.fillPages(addr, 1024, 5);
    const fd = system.device(0).open(proc);
    expect(() => fd.migrateToDevice(addr, 1024)).toThrow(/ENOENT/);
    expect(system.device(0).usedPages).toBe(768);
    expect(system.device(0).driver.chunks.map((chunk) => chunk.pages)).toEqual([512, 256]);
    const codes = fd.snapshot(addr, 1024);
    expect(
      codes.filter((code) => code === (HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE)).length,
    ).toBe(768);
    expect(proc.checkPages(addr, 1024, 5)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("HMM_DMIRROR_RELEASE (dmirror_device_remove_chunks)", () => {
  // For each chunk: mark it removed, drop its free pages, dmirror_device_evict_chunk, memunmap_pages,
  // free it; the next allocation adds a new chunk.
  it("evicts every chunk, removes its pagemap, and later migrations add new chunks", () => {
    const system = new System({ ram: "8MiB", devices: [{ memory: "4MiB" }] });
    const proc = system.spawn();
    const addr = proc.mmap(600 * 4096);
    proc.fillPages(addr, 600, 6);
    const fd = system.device(0).open(proc);
    expect(fd.migrateToDevice(addr, 600).cpages).toBe(600);
    const other = system.spawn();
    const theirs = other.mmap(4 * 4096);
    other.fillPages(theirs, 4, 7);
    system.device(0).open(other).migrateToDevice(theirs, 4);
    const old = [...system.device(0).driver.chunks];
    expect(old).toHaveLength(2);
    fd.release();
    expect(system.device(0).driver.chunks).toEqual([]);
    expect(old.every((chunk) => chunk.removed)).toBe(true);
    expect(system.device(0).usedPages).toBe(0);
    // Every page is back in RAM with its data, the other process's too.
    expect(ptePresent(system.kernel.pt.read(proc.mm.root, addr / 4096))).toBe(true);
    expect(proc.checkPages(addr, 600, 6)).toEqual([]);
    expect(other.checkPages(theirs, 4, 7)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
    // A new chunk, at pfns above the removed ones.
    expect(fd.migrateToDevice(addr, 4).cpages).toBe(4);
    const fresh = system.device(0).driver.chunks;
    expect(fresh).toHaveLength(1);
    expect(fresh[0]!.startPfn).toBeGreaterThan(old[1]!.startPfn);
    expect(proc.checkPages(addr, 600, 6)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("does not exist under 4.14 (test_hmm.c gained it with migrate_device_range in 6.1): EINVAL", () => {
    const system = new System({ ram: "8MiB", protocol: "4.14", devices: [{ memory: "1MiB" }] });
    const proc = system.spawn();
    expect(() => system.device(0).open(proc).release()).toThrow(/EINVAL/);
    expect(system.device(0).driver.chunks).toHaveLength(1);
  });
});
