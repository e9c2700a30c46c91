/** Shared set-up for the protocol tests: a small system with one process and device 0 opened by it. */
import { expect } from "vitest";
import { KernelError } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import type { DeviceFile } from "../../src/device.js";
import { HMM_DMIRROR_PROT_READ, HMM_DMIRROR_PROT_WRITE } from "../../src/drivers/dmirror.js";
import type { ProtocolVersion } from "../../src/mm/kernel.js";
import { isDevicePrivateEntry, pteFrame, ptePresent } from "../../src/mm/pgtable.js";
import type { Process } from "../../src/process.js";
import { System } from "../../src/system.js";

export const P = PAGE_SIZE;

/** The protocols the tests run under unless a test says otherwise. */
export const PROTOCOLS: readonly ProtocolVersion[] = ["4.14", "modern"];

export interface Setup {
  system: System;
  proc: Process;
  fd: DeviceFile;
}

export function setup(protocol: ProtocolVersion): Setup {
  const system = new System({
    ram: "8MiB",
    protocol,
    store: "bytes",
    devices: [{ memory: "1MiB" }, { memory: "1MiB" }],
  });
  const proc = system.spawn();
  const fd = system.device(0).open(proc);
  return { system, proc, fd };
}

/** The errno code ("EINVAL", ...) of the KernelError `body` throws; fails the test if it succeeds. */
export function errorCode(body: () => unknown): string {
  try {
    body();
  } catch (error) {
    if (error instanceof KernelError) return error.code;
    throw error;
  }
  expect.fail("expected a KernelError");
}

/** The PTE that maps addr in the process (0 when none). */
export function pteAt(proc: Process, addr: number): number {
  return proc.system.kernel.pt.read(proc.mm.root, Math.floor(addr / PAGE_SIZE));
}

/** The pfn behind a present PTE or a device-private entry at addr. */
export function pfnAt(proc: Process, addr: number): number {
  const pte = pteAt(proc, addr);
  expect(ptePresent(pte) || isDevicePrivateEntry(pte), `page mapped at 0x${addr.toString(16)}`).toBe(true);
  return pteFrame(pte);
}

/** Every 32-bit word of page `index` in `data` equals `value`. */
export function pageHolds(data: Uint8Array, index: number, value: number): boolean {
  const words = new Uint32Array(data.buffer, data.byteOffset + index * PAGE_SIZE, PAGE_SIZE / 4);
  return words.every((word) => word === value >>> 0);
}

/**
 * The write bit a page keeps when migration collects it from a writable device-private entry. Until
 * "mm/migrate: properly preserve write attribute in special migrate entry" (after 4.14) collect built
 * the migration entry from pte_write() of the non-present PTE, which is false, so under "4.14" such a
 * page comes back read-only (switch writeFromMpfn). Returns the snapshot's READ or WRITE bit.
 */
export function recollectedAccess(protocol: ProtocolVersion): number {
  return protocol === "4.14" ? HMM_DMIRROR_PROT_READ : HMM_DMIRROR_PROT_WRITE;
}
