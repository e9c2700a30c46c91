/**
 * "A failed call changes nothing", made checkable: everything a system call could change, as plain
 * data. Compare stateOf(system) before and after a call that must fail.
 */
import { expect } from "vitest";
import { KernelError } from "../../src/base/errno.js";
import { SignalError } from "../../src/process.js";
import type { System } from "../../src/system.js";

export interface SystemState {
  processes: {
    pid: number;
    vmas: { start: number; end: number; flags: number; pgoff: number; file: string | null }[];
    /** Every non-empty PTE inside a VMA, as [vpn, pte]. */
    ptes: [number, number][];
    rss: [number, number];
  }[];
  usedPages: number;
  pins: [number, number][];
  files: { name: string; size: number; cached: number[] }[];
}

export function stateOf(system: System): SystemState {
  const k = system.kernel;
  return {
    processes: system.liveProcesses().map((proc) => {
      const ptes: [number, number][] = [];
      for (const vma of proc.mm.vmas) {
        for (let vpn = vma.start as number; vpn < vma.end; vpn++) {
          const pte = k.pt.read(proc.mm.root, vpn);
          if (pte !== 0) ptes.push([vpn, pte]);
        }
      }
      return {
        pid: proc.pid,
        vmas: proc.mm.vmas.map((vma) => ({
          start: vma.start,
          end: vma.end,
          flags: vma.flags,
          pgoff: vma.pgoff,
          file: vma.file?.name ?? null,
        })),
        ptes,
        rss: [proc.mm.rssAnon, proc.mm.rssFile],
      };
    }),
    usedPages: system.usedPages,
    pins: [...system.gup.pins].sort((a, b) => a[0] - b[0]),
    files: k
      .addressSpaces()
      .map((space) => ({ name: space.name, size: space.sizeBytes, cached: [...space.pages.keys()].sort() })),
  };
}

/**
 * Runs `call`, which must fail with KernelError `code` (or SignalError `code`, a signal name), and
 * checks that the whole state is as it was and consistent.
 */
export function expectFailsUnchanged(system: System, code: string, call: () => unknown, what = code): void {
  const before = stateOf(system);
  let thrown: unknown = null;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `${what}: the call must fail`).not.toBeNull();
  expect(thrown, `${what}: a KernelError`).toBeInstanceOf(KernelError);
  const got = thrown instanceof SignalError ? thrown.signal : (thrown as KernelError).code;
  expect(got, `${what}: ${(thrown as Error).message}`).toBe(code);
  expect(stateOf(system), `${what}: nothing changed`).toEqual(before);
  expect(system.checkInvariants(), what).toEqual([]);
}
