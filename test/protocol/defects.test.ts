/**
 * Historical defects (KERNEL-NOTES section 9) brought back by overriding one switch, each showing what
 * it did; with the switch as the fixed kernel has it, the same scenario is clean.
 */
import { describe, expect, it } from "vitest";
import type { ProtocolVersion } from "../../src/mm/kernel.js";
import type { MigrateSwitches } from "../../src/mm/migrate_pfn.js";
import { lruAddDrainAll } from "../../src/mm/swap.js";
import { pageValue } from "../../src/process.js";
import { System } from "../../src/system.js";
import { P } from "./helpers.js";

type Overrides = Partial<Omit<MigrateSwitches, "protocol">>;

function system(protocol: ProtocolVersion, migrateSwitches: Overrides = {}): System {
  return new System({
    ram: "8MiB",
    protocol,
    devices: [{ memory: "1MiB" }, { memory: "1MiB" }],
    migrateSwitches,
  });
}

/** lru_add_drain_all, so that pages waiting in the per-CPU batches reach their lists. */
function drainLru(sys: System): void {
  sys.kernel.sched.call(
    "lru_add_drain_all",
    (function* () {
      lruAddDrainAll(sys.kernel);
    })(),
  );
}

describe("S11: finalize puts a migrated-away source page back on the LRU (41cddf83d8b0)", () => {
  for (const finalizeLruOnlyDst of [false, true]) {
    it(`modern with finalizeLruOnlyDst ${finalizeLruOnlyDst}`, () => {
      const sys = system("modern", { finalizeLruOnlyDst });
      const proc = sys.spawn();
      const addr = proc.mmap(4 * P);
      proc.fillPages(addr, 4, 3);
      expect(sys.device(0).open(proc).migrateToDevice(addr, 4).cpages).toBe(4);
      drainLru(sys);
      const warned = sys.checkInvariants().filter((line) => line.includes("after migrating away"));
      // Before the fix each source page, its memcg data already moved to the device page, was added
      // to an LRU list on its way to being freed: folio_lruvec_lock's warning, once per page.
      expect(warned).toHaveLength(finalizeLruOnlyDst ? 0 : 4);
      expect(proc.checkPages(addr, 4, 3)).toEqual([]);
    });
  }
});

describe("S10: putback_lru_page on ZONE_DEVICE pages", () => {
  for (const zoneDeviceAwarePutback of [false, true]) {
    it(`4.14 with zoneDeviceAwarePutback ${zoneDeviceAwarePutback}`, () => {
      const sys = system("4.14", { zoneDeviceAwarePutback });
      const proc = sys.spawn();
      const addr = proc.mmap(2 * P);
      proc.fillPages(addr, 2, 5);
      expect(sys.device(0).open(proc).migrateToDevice(addr, 2).cpages).toBe(2);
      const onLru = sys.checkInvariants().filter((line) => line.includes("ZONE_DEVICE page on the LRU"));
      expect(onLru).toHaveLength(zoneDeviceAwarePutback ? 0 : 2);
    });
  }
});

describe("S2: no mmu notifier around collect", () => {
  for (const collectNotifier of ["none", "clear"] as const) {
    it(`4.14 with collectNotifier ${collectNotifier}: another device's mirror ${collectNotifier === "none" ? "keeps the old page" : "is invalidated"}`, () => {
      const sys = system("4.14", { collectNotifier });
      const proc = sys.spawn();
      const addr = proc.mmap(P);
      proc.fillPages(addr, 1, 1);
      const mirror1 = sys.device(1).open(proc);
      expect(mirror1.read(addr, 1).words[0]).toBe(pageValue(1, 0));
      // Device 0 migrates the page away; then the CPU writes new contents (faulting it back to RAM).
      expect(sys.device(0).open(proc).migrateToDevice(addr, 1).cpages).toBe(1);
      // Once the LRU batch lets go of it, the source frame is free and goes to the next allocation:
      // another buffer of the process.
      drainLru(sys);
      const other = proc.mmap(P);
      proc.fillPages(other, 1, 9);
      proc.fillPages(addr, 1, 2);
      const seen = mirror1.read(addr, 1).words[0];
      // Without the invalidation device 1 still mirrors the freed source frame: it reads the other
      // buffer's data where the process wrote 2.
      if (collectNotifier === "none") expect(seen).toBe(pageValue(9, 0));
      else expect(seen).toBe(pageValue(2, 0));
      expect(proc.checkPages(addr, 1, 2)).toEqual([]);
    });
  }
});
