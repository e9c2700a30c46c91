import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "../../src/base/units.js";
import { MAP_SHARED, PROT_READ } from "../../src/mm/mmap.js";
import { drain, pageOf, smallSystem, vmaLayout } from "./helpers.js";

const P = PAGE_SIZE;

describe("fork and exit", () => {
  it("the child gets the same VMAs and contents, and later changes stay apart", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const a = parent.mmap(2 * P);
    const b = parent.mmap(P, { prot: PROT_READ });
    const file = system.createFile("f", P);
    const c = parent.mmap(P, { file, flags: MAP_SHARED });
    parent.write(a, pageOf(3, 2));
    parent.writeU32(c, 4);
    const child = parent.fork();
    expect(vmaLayout(child)).toEqual(vmaLayout(parent));
    expect(child.read(a, 2 * P)).toEqual(pageOf(3, 2));
    expect(child.readU32(b)).toBe(0);
    expect(child.readU32(c)).toBe(4);
    child.munmap(a, P);
    expect(parent.read(a, P)).toEqual(pageOf(3));
    expect(vmaLayout(child)).not.toEqual(vmaLayout(parent));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("the parent's exit leaves the child's data; both exits free everything but the page cache", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(4 * P);
    parent.fillPages(addr, 4, 1);
    const child = parent.fork();
    parent.exit();
    expect(child.checkPages(addr, 4, 1)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
    const grandchild = child.fork();
    child.exit();
    expect(grandchild.checkPages(addr, 4, 1)).toEqual([]);
    grandchild.exit();
    drain(system);
    expect(system.usedPages).toBe(0);
    expect(system.liveProcesses()).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});
