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
import { FOLL_PIN } from "../../src/mm/gup.js";
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

  it("does not exist before 5.11 (ENOENT under 4.14)", () => {
    const system = new System({ ram: "16MiB", protocol: "4.14", devices: [{ memory: "4MiB" }] });
    expect(errnoOf(() => system.openGupTest(system.spawn()))).toBe(ENOENT);
  });
});
