import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "../../src/base/units.js";
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE } from "../../src/mm/mmap.js";
import { walkPageRange } from "../../src/mm/pagewalk.js";
import type { Kfn } from "../../src/sched/thread.js";
import { inThread, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;
const BASE_VPN = 0x100_0000; // PMD-aligned

function walk(stopAt = -1) {
  const system = smallSystem();
  const proc = system.spawn();
  // A VMA across a PMD boundary, a gap, then a second VMA.
  proc.mmap(4 * P, { addr: (BASE_VPN + 510) * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
  proc.mmap(P, { addr: (BASE_VPN + 520) * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
  proc.touch((BASE_VPN + 510) * P, 1, true);
  const k = system.kernel;
  const calls: string[] = [];
  const ret = inThread(
    system,
    walkPageRange(k, proc.mm, BASE_VPN + 508, BASE_VPN + 522, {
      *pmdEntry(table, start, end, vma): Kfn<number> {
        expect(k.pt.lookupTable(proc.mm.root, start)).toBe(table);
        calls.push(`pmd ${start - BASE_VPN}-${end - BASE_VPN} in ${vma.start - BASE_VPN}`);
        return calls.length === stopAt ? 7 : 0;
      },
      *pteHole(start, end, vma): Kfn<number> {
        calls.push(
          `hole ${start - BASE_VPN}-${end - BASE_VPN}${vma === null ? "" : ` in ${vma.start - BASE_VPN}`}`,
        );
        return calls.length === stopAt ? 7 : 0;
      },
    }),
  );
  return { ret, calls };
}

describe("walk_page_range", () => {
  it("cuts the range at VMA and PMD boundaries, with holes where no VMA or no table is", () => {
    const { ret, calls } = walk();
    expect(ret).toBe(0);
    expect(calls).toEqual([
      "hole 508-510",
      "pmd 510-512 in 510",
      "hole 512-514 in 510",
      "hole 514-520",
      "hole 520-521 in 520",
      "hole 521-522",
    ]);
  });

  it("stops at the first callback that returns non-zero and returns its value", () => {
    const { ret, calls } = walk(2);
    expect(ret).toBe(7);
    expect(calls).toHaveLength(2);
  });
});
