/** Behaviours a review found wrong, pinned down: each test failed before its fix. */
import { describe, expect, it } from "vitest";
import {
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
} from "../../src/drivers/dmirror.js";
import { type MigrateVmaArgs, migrateVmaFinalize, migrateVmaSetup } from "../../src/mm/migrate_device.js";
import { MIGRATE_VMA_SELECT_DEVICE_PRIVATE } from "../../src/mm/migrate_pfn.js";
import { PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE } from "../../src/mm/mmap.js";
import { ptePresent, pteProtNone } from "../../src/mm/pgtable.js";
import { SignalError } from "../../src/process.js";
import { P, PROTOCOLS, pteAt, setup } from "./helpers.js";

describe.each(PROTOCOLS)("[%s]", (protocol) => {
  it("a page left on the device after close still faults back to the CPU with its data", () => {
    const { system, proc, fd } = setup(protocol);
    const addr = proc.mmap(2 * P);
    proc.fillPages(addr, 2, 21);
    expect(fd.migrateToDevice(addr, 2).cpages).toBe(2);
    fd.close();
    // Under 4.14 close does not evict, so the CPU's touch finds a device page of a closed mirror.
    expect(proc.checkPages(addr, 2, 21)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a CPU fault whose migration back cannot get a page fails as the era's driver and arch handler say", () => {
    const { system, proc, fd } = setup(protocol);
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 22);
    expect(fd.migrateToDevice(addr, 1).cpages).toBe(1);
    fd.setFlags(addr);
    if (protocol === "4.14") {
      // A 4.14 driver reported the page that cannot come back with MIGRATE_PFN_ERROR: SIGBUS.
      let caught: unknown = null;
      try {
        proc.checkPages(addr, 1, 22);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(SignalError);
      expect((caught as SignalError).signal).toBe("SIGBUS");
      expect(fd.snapshot(addr, 1)[0]! & 0xf0).toBe(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL);
      // The flag was used once; the next touch brings the page home intact.
      expect(proc.checkPages(addr, 1, 22)).toEqual([]);
    } else {
      // dmirror_devmem_fault returns VM_FAULT_OOM; x86's mm_fault_error sends a user fault to
      // pagefault_out_of_memory, which (RAM being plentiful) only warns, and the access retries.
      expect(proc.checkPages(addr, 1, 22)).toEqual([]);
      expect(system.kernel.stats.oomRetries).toBe(1);
      expect(system.kernel.stats.oomKills).toBe(0);
    }
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe.each(PROTOCOLS)("mprotect [%s]", (protocol) => {
  it("makes writable device-private entries read-only whatever the new protection", () => {
    const { system, proc, fd } = setup(protocol);
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 24);
    expect(fd.migrateToDevice(addr, 1).cpages).toBe(1);
    expect(fd.snapshot(addr, 1)[0]).toBe(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE);
    // Adding PROT_EXEC takes no access away, but change_pte_range downgrades the entry all the same.
    proc.mprotect(addr, P, PROT_READ | PROT_WRITE | PROT_EXEC);
    expect(fd.snapshot(addr, 1)[0]).toBe(HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_READ);
    // A CPU write still succeeds: it faults the page back and then write-faults it.
    proc.fillPages(addr, 1, 25);
    expect(proc.checkPages(addr, 1, 25)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("modern", () => {
  it("eviction into a PROT_NONE VMA leaves the PTE inaccessible", () => {
    const { system, proc, fd } = setup("modern");
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 23);
    expect(fd.migrateToDevice(addr, 1).cpages).toBe(1);
    proc.mprotect(addr, P, PROT_NONE);
    // close evicts the device's memory to RAM through migrate_device_range, whatever the VMA allows.
    fd.close();
    const pte = pteAt(proc, addr);
    expect(ptePresent(pte)).toBe(true);
    expect(pteProtNone(pte)).toBe(true);
    expect(() => proc.touch(addr, 1, false)).toThrow(SignalError);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("selects holes of an anonymous VMA whatever the MIGRATE_VMA_SELECT_* flags", () => {
    const { system, proc } = setup("modern");
    const addr = proc.mmap(4 * P);
    const vma = proc.mm.findVma(addr / P);
    const args: MigrateVmaArgs = {
      vma,
      start: addr,
      end: addr + 4 * P,
      src: new Float64Array(4),
      dst: new Float64Array(4),
      pgmapOwner: system.device(0).driver,
      flags: MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
    };
    const ctx = system.migrateContext;
    system.kernel.sched.call(
      "setup+finalize",
      (function* () {
        expect(yield* migrateVmaSetup(ctx, args)).toBe(0);
        yield* migrateVmaFinalize(ctx, args);
      })(),
    );
    expect(args.cpages).toBe(4);
    expect(Array.from(args.src!)).toEqual([2, 2, 2, 2]); // MIGRATE_PFN_MIGRATE, no page
    expect(system.checkInvariants()).toEqual([]);
  });
});
