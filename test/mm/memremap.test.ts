/**
 * ZONE_DEVICE pagemap lifetime (mm/memremap.c): zone_device_page_init takes a pgmap reference per page,
 * free_zone_device_folio drops it, memunmap_pages kills the reference, waits for every page in use to
 * be freed (wait_for_completion(&pgmap->done)) and removes the struct pages. Reaching a page through a
 * removed pagemap is a use after free: hmmsim asserts it and the checker names it.
 */
import { describe, expect, it } from "vitest";
import { EINVAL } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { unlockPage } from "../../src/mm/filemap.js";
import {
  type DevPagemap,
  MEMORY_DEVICE_PRIVATE,
  memremapPages,
  memunmapPages,
  zoneDevicePageInit,
} from "../../src/mm/memremap.js";
import { makeDevicePrivateEntry, PageTables } from "../../src/mm/pgtable.js";
import { type Kfn, PREEMPT } from "../../src/sched/thread.js";
import type { System } from "../../src/system.js";
import { errnoOf } from "../support/errno-of.js";
import { inThread, smallSystem } from "./helpers.js";

function fakeDevice(system: System, freed: number[]): DevPagemap {
  return memremapPages(system.kernel, system.pagemaps, MEMORY_DEVICE_PRIVATE, 4, "fake device", {
    pageFree: (pfn) => freed.push(pfn),
    *migrateToRam(): Kfn<number> {
      return 0;
    },
  });
}

/** Hands out one page of the pagemap, as a driver's allocator does (locked, then unlocked). */
function allocate(system: System, pfn: number): void {
  inThread(
    system,
    (function* (): Kfn<void> {
      zoneDevicePageInit(system.kernel, system.pagemaps, pfn);
      unlockPage(system.kernel, pfn);
    })(),
  );
}

describe("memunmap_pages", () => {
  it("sleeps until the last page in use is freed, and no page may be handed out meanwhile", () => {
    const system = smallSystem();
    const k = system.kernel;
    const freed: number[] = [];
    const pgmap = fakeDevice(system, freed);
    const pfn = pgmap.startPfn;
    allocate(system, pfn);
    expect(pgmap.pagesInUse).toBe(1);
    const log: string[] = [];
    k.sched.setChooser((runnable, i) => i % runnable.length);
    k.sched.spawn(
      "memunmap_pages",
      (function* (): Kfn<void> {
        yield* memunmapPages(k, pgmap);
        log.push("removed");
      })(),
    );
    k.sched.spawn(
      "last user",
      (function* (): Kfn<void> {
        for (let i = 0; i < 4; i++) yield PREEMPT;
        // zone_device_page_init WARNs after percpu_ref_kill ("Drivers shouldn't be allocating pages
        // after calling memunmap_pages()"); hmmsim asserts.
        try {
          zoneDevicePageInit(k, system.pagemaps, pfn + 1);
        } catch (error) {
          log.push(String(error));
        }
        log.push("put");
        k.pages.put(pfn);
      })(),
    );
    k.sched.runAll();
    expect(log).toEqual([
      expect.stringContaining("zone_device_page_init after memunmap_pages"),
      "put",
      "removed",
    ]);
    expect(pgmap.removed).toBe(true);
    expect(freed).toEqual([pfn]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("returns at once when no page is in use", () => {
    const system = smallSystem();
    const pgmap = fakeDevice(system, []);
    inThread(system, memunmapPages(system.kernel, pgmap));
    expect(pgmap.removed).toBe(true);
  });

  // page_pgmap on a removed pagemap: the struct page is gone (the next issue poisons it).
  it("a device page reached through a removed pagemap is asserted, and the checker names it", () => {
    const system = smallSystem();
    const pgmap = fakeDevice(system, []);
    inThread(system, memunmapPages(system.kernel, pgmap));
    const pfn = pgmap.startPfn;
    expect(() => system.pagemaps.of(pfn)).toThrow(/device page of a pagemap that memunmap_pages removed/);
    expect(system.pagemaps.lookup(pfn)).toBe(pgmap);
    // A stale device-private PTE left by a buggy driver: the CPU fault reaches migrate_to_ram through it.
    const proc = system.spawn();
    const addr = proc.mmap(PAGE_SIZE);
    proc.touch(addr, 1, true);
    const k = system.kernel;
    const table = k.pt.lookupTable(proc.mm.root, addr / PAGE_SIZE);
    const slot = PageTables.slot(table, addr / PAGE_SIZE);
    const ram = k.pt.entries[slot]!;
    k.pt.entries[slot] = makeDevicePrivateEntry(pfn, true);
    // The touch left the page in this CPU's TLB; the driver's PTE write flushes it, as the kernel would.
    k.tlb.flushPage(proc.mm.id, addr / PAGE_SIZE);
    expect(system.checkInvariants().some((line) => line.startsWith(`pfn ${pfn}: free but mapped`))).toBe(
      true,
    );
    expect(() => proc.readU32(addr)).toThrow(/memunmap_pages removed/);
    k.pt.entries[slot] = ram;
    // A device mirror entry that names it.
    const fd = system.device(0).open(proc);
    fd.mirror.pt.set(addr / PAGE_SIZE, pfn * 4);
    expect(system.checkInvariants()).toContain(
      `stale device mirror entry: dmirror 0 open 1 (mm ${proc.mm.id}) maps vpn 0x${(addr / PAGE_SIZE).toString(16)} to pfn ${pfn}, a page of a removed pagemap`,
    );
  });

  it("answers a driver's bad arguments with EINVAL, as memremap_pages does, and registers nothing", () => {
    const system = smallSystem();
    const k = system.kernel;
    const before = system.pagemaps.list.length;
    const ops = {
      pageFree: () => {},
      *migrateToRam(): Kfn<number> {
        return 0;
      },
    };
    const attempts: (() => unknown)[] = [
      () => memremapPages(k, system.pagemaps, 7 as typeof MEMORY_DEVICE_PRIVATE, 4, null, ops),
      () => memremapPages(k, system.pagemaps, MEMORY_DEVICE_PRIVATE, 0, null, ops),
      () => memremapPages(k, system.pagemaps, MEMORY_DEVICE_PRIVATE, 1.5, null, ops),
      () => memremapPages(k, system.pagemaps, MEMORY_DEVICE_PRIVATE, 4, null, null as unknown as typeof ops),
      () =>
        memremapPages(k, system.pagemaps, MEMORY_DEVICE_PRIVATE, 4, null, {
          pageFree: ops.pageFree,
        } as typeof ops),
    ];
    for (const attempt of attempts) expect(errnoOf(attempt)).toBe(EINVAL);
    expect(system.pagemaps.list.length).toBe(before);
    expect(system.checkInvariants()).toEqual([]);
  });
});
