/** The gup_test file (mm/gup_test.c): its ioctls take and release references and pins, checked as Linux checks them. */
import { describe, expect, it } from "vitest";
import { EFAULT, EINVAL, ENOENT } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  FOLL_WRITE,
  GUP_BASIC_TEST,
  type GupTestArgs,
  PIN_BASIC_TEST,
  PIN_LONGTERM_BENCHMARK,
} from "../../src/gup_test.js";
import { FOLL_GET, FOLL_LONGTERM, FOLL_PIN } from "../../src/mm/gup.js";
import { System } from "../../src/system.js";
import { errnoOf } from "../support/errno-of.js";

function gupSystem() {
  const system = new System({ ram: "16MiB", devices: [{ memory: "4MiB" }] });
  const proc = system.spawn();
  const gup = system.openGupTest(proc);
  const addr = proc.mmap(8 * PAGE_SIZE);
  return { system, proc, gup, addr };
}

describe("gup_test", () => {
  it("takes and releases every page of the range, faulting them in, and reports the bytes covered", () => {
    const { system, proc, gup, addr } = gupSystem();
    for (const cmd of [GUP_BASIC_TEST, PIN_BASIC_TEST, PIN_LONGTERM_BENCHMARK]) {
      const { size } = gup.ioctl(cmd, { addr, size: 8 * PAGE_SIZE, nrPagesPerCall: 3, gupFlags: FOLL_WRITE });
      expect(size).toBe(8 * PAGE_SIZE);
      expect(system.gup.gets.size + system.gup.pins.size).toBe(0);
      expect(system.checkInvariants()).toEqual([]);
    }
    // The write faults populated every page.
    expect(system.kernel.stats.faults).toBeGreaterThanOrEqual(8);
    // A range that runs past the mapping stops at its end without failing.
    expect(
      gup.ioctl(GUP_BASIC_TEST, { addr, size: 16 * PAGE_SIZE, nrPagesPerCall: 4, gupFlags: 0 }).size,
    ).toBe(8 * PAGE_SIZE);
    // FOLL_PIN from user space is the kernel's own flag: the call fails and the ioctl covers nothing.
    expect(
      gup.ioctl(PIN_BASIC_TEST, { addr, size: PAGE_SIZE, nrPagesPerCall: 1, gupFlags: FOLL_PIN }).size,
    ).toBe(0);
    expect(proc.exited).toBe(false);
  });

  it("refuses an unknown command and bad fields with EINVAL, a struct that is not one with EFAULT", () => {
    const { gup, addr } = gupSystem();
    expect(errnoOf(() => gup.ioctl(99, { addr, size: PAGE_SIZE, nrPagesPerCall: 1, gupFlags: 0 }))).toBe(
      EINVAL,
    );
    expect(
      errnoOf(() => gup.ioctl(GUP_BASIC_TEST, { addr: -1, size: PAGE_SIZE, nrPagesPerCall: 1, gupFlags: 0 })),
    ).toBe(EINVAL);
    expect(
      errnoOf(() => gup.ioctl(GUP_BASIC_TEST, { addr, size: 0.5, nrPagesPerCall: 1, gupFlags: 0 })),
    ).toBe(EINVAL);
    const notAStruct: unknown = null;
    expect(errnoOf(() => gup.ioctl(GUP_BASIC_TEST, notAStruct as GupTestArgs))).toBe(EFAULT);
  });

  it("reports the pages taken, not the range walked, and refuses what mm/gup_test.c and is_valid_gup_args refuse", () => {
    const { system, proc, gup, addr } = gupSystem();
    // Only the first 2 of 4 pages are mapped: the call takes 2 and the ioctl says 2 pages' bytes.
    proc.munmap(addr + 2 * PAGE_SIZE, 6 * PAGE_SIZE);
    const short = { addr, size: 4 * PAGE_SIZE, nrPagesPerCall: 4, gupFlags: FOLL_WRITE };
    expect(gup.ioctl(GUP_BASIC_TEST, short).size).toBe(2 * PAGE_SIZE);
    expect(gup.ioctl(PIN_BASIC_TEST, short).size).toBe(2 * PAGE_SIZE);
    // __gup_test_ioctl's own checks: no size, no pages per call, a size that is not page-aligned.
    for (const bad of [
      { addr, size: 0, nrPagesPerCall: 1, gupFlags: 0 },
      { addr, size: PAGE_SIZE, nrPagesPerCall: 0, gupFlags: 0 },
      { addr, size: PAGE_SIZE + 5, nrPagesPerCall: 1, gupFlags: 0 },
    ])
      expect(errnoOf(() => gup.ioctl(GUP_BASIC_TEST, bad))).toBe(EINVAL);
    // An unknown command is EINVAL before the struct is read.
    expect(errnoOf(() => gup.ioctl(99, null as unknown as GupTestArgs))).toBe(EINVAL);
    // A caller's FOLL_GET is fine for get_user_pages; on a pin it is FOLL_GET|FOLL_PIN, refused.
    const get = { addr, size: PAGE_SIZE, nrPagesPerCall: 1, gupFlags: FOLL_GET };
    expect(gup.ioctl(GUP_BASIC_TEST, get).size).toBe(PAGE_SIZE);
    expect(gup.ioctl(PIN_BASIC_TEST, get).size).toBe(0);
    expect(system.gup.gets.size + system.gup.pins.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("takes no long-term reference without a pin: FOLL_LONGTERM on get_user_pages leaves coherent pages where they are", () => {
    const system = new System({ ram: "16MiB", devices: [{ memory: "4MiB", type: "coherent" }] });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * PAGE_SIZE);
    proc.fillPages(addr, 2, 3);
    expect(fd.migrateToDevice(addr, 2).cpages).toBe(2);
    const before = Array.from(fd.snapshot(addr, 2));
    const gup = system.openGupTest(proc);
    const args = { addr, size: 2 * PAGE_SIZE, nrPagesPerCall: 2, gupFlags: FOLL_WRITE | FOLL_LONGTERM };
    expect(gup.ioctl(GUP_BASIC_TEST, args).size).toBe(0);
    expect(Array.from(fd.snapshot(addr, 2))).toEqual(before);
    // The pinned form does move them to RAM first.
    expect(gup.ioctl(PIN_BASIC_TEST, args).size).toBe(2 * PAGE_SIZE);
    expect(Array.from(fd.snapshot(addr, 2))).not.toEqual(before);
    expect(proc.checkPages(addr, 2, 3)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("does not exist before 5.11 (ENOENT under 4.14)", () => {
    const system = new System({ ram: "16MiB", protocol: "4.14", devices: [{ memory: "4MiB" }] });
    expect(errnoOf(() => system.openGupTest(system.spawn()))).toBe(ENOENT);
  });
});
