/** The use-after-free check (src/mm/kasan.ts), as a user reads it. */
import { describe, expect, it } from "vitest";
import { kasanCheckPage, UseAfterFreeError } from "../../src/mm/kasan.js";
import { isDevicePrivateEntry, pteFrame } from "../../src/mm/pgtable.js";
import { System } from "../../src/system.js";

describe("kasanCheckPage", () => {
  it("passes a page in use and reports a freed device page by name", () => {
    const system = new System({ ram: "1MiB", store: "tokens", devices: [{ memory: "2MiB" }] });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(4096);
    proc.fillPages(addr, 1, 1);
    fd.migrateToDevice(addr, 1);
    const k = system.kernel;
    const entry = k.pt.read(proc.mm.root, addr / 4096);
    expect(isDevicePrivateEntry(entry)).toBe(true);
    const devicePfn = pteFrame(entry);
    expect(() => kasanCheckPage(k, devicePfn, "test: reads page->zone_device_data")).not.toThrow();
    fd.migrateToSystem(addr, 1);
    expect(() => kasanCheckPage(k, devicePfn, "test: reads page->zone_device_data")).toThrow(
      UseAfterFreeError,
    );
    expect(() => kasanCheckPage(k, devicePfn, "test: reads page->zone_device_data")).toThrow(
      `use-after-free in test: reads page->zone_device_data: pfn ${devicePfn} is a freed device page`,
    );
  });
});
