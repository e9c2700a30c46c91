import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  BytesStore,
  createPageStore,
  NoBytesError,
  type PageStore,
  TokensStore,
} from "../../src/mm/page_store.js";
import { pteFrame } from "../../src/mm/pgtable.js";
import { pageValue } from "../../src/process.js";
import { smallSystem } from "./helpers.js";

const P = PAGE_SIZE;

describe.each(["bytes", "tokens"] as const)("%s store", (kind) => {
  const make = (): PageStore => createPageStore(kind, 64);

  it("starts zeroed and holds what fill wrote", () => {
    const store = make();
    expect(store.kind).toBe(kind);
    expect(store.holds(3, 0)).toBe(true);
    store.fill(3, 0xcafe1234);
    expect(store.holds(3, 0xcafe1234)).toBe(true);
    expect(store.holds(3, 0xcafe1235)).toBe(false);
    expect(store.word(3)).toBe(0xcafe1234);
    expect(store.holds(4, 0)).toBe(true);
  });

  it("copy gives the destination the source's contents; zero clears", () => {
    const store = make();
    store.fill(1, 77);
    store.copy(2, 1);
    expect(store.holds(2, 77)).toBe(true);
    store.zero(1);
    expect(store.holds(1, 0)).toBe(true);
    expect(store.holds(2, 77)).toBe(true);
  });

  it("keeps values as unsigned 32-bit words", () => {
    const store = make();
    store.fill(5, -1);
    expect(store.word(5)).toBe(0xffffffff);
    expect(store.holds(5, 0xffffffff)).toBe(true);
  });

  it("grows to make room for device frames", () => {
    const store = make();
    store.grow(1024);
    store.fill(1000, 9);
    expect(store.holds(1000, 9)).toBe(true);
  });
});

describe("bytes store", () => {
  it("reads and writes byte ranges within a frame", () => {
    const store = new BytesStore(8);
    const data = Uint8Array.from([1, 2, 3, 4, 5]);
    store.writeBytes(2, 100, data, 1, 3);
    const out = new Uint8Array(6);
    store.readBytes(2, 99, out, 1, 5);
    expect(out).toEqual(Uint8Array.from([0, 0, 2, 3, 4, 0]));
    expect(store.word(2)).toBe(0);
  });

  it("refuses accesses that cross a frame or leave the store", () => {
    const store = new BytesStore(8);
    expect(() => store.writeBytes(0, P - 2, new Uint8Array(4), 0, 4)).toThrow(/write crosses a frame/);
    expect(() => store.readBytes(0, -1, new Uint8Array(1), 0, 1)).toThrow(AssertionError);
    expect(() => store.fill(8, 1)).toThrow(/pfn outside the page store: 8 of 8/);
  });

  it("allocates host memory only when a frame is first touched", () => {
    const store = new BytesStore(16);
    expect(store.residentBytes()).toBe(0);
    store.fill(0, 1);
    expect(store.residentBytes()).toBe(16 * P);
  });

  it("fill writes every word, so a byte read sees the value's bytes", () => {
    const store = new BytesStore(4);
    store.fill(1, 0x04030201);
    const out = new Uint8Array(8);
    store.readBytes(1, P - 8, out, 0, 8);
    expect(out).toEqual(Uint8Array.from([1, 2, 3, 4, 1, 2, 3, 4]));
    const one = Uint8Array.from([9]);
    store.writeBytes(1, P - 1, one, 0, 1);
    expect(store.holds(1, 0x04030201)).toBe(false);
  });
});

describe("tokens store", () => {
  it("keeps one version per frame and refuses byte access with a clear error", () => {
    const store = new TokensStore(4);
    expect(store.residentBytes()).toBe(16);
    expect(() => store.readBytes()).toThrow(NoBytesError);
    expect(() => store.writeBytes()).toThrow(/keeps one version per page, not bytes; use the bytes store/);
  });

  it("runs fillPages/checkPages through a process, and refuses its byte reads", () => {
    const system = smallSystem({ store: "tokens" });
    const proc = system.spawn();
    const addr = proc.mmap(4 * P);
    proc.fillPages(addr, 4, 11);
    expect(proc.checkPages(addr, 4, 11)).toEqual([]);
    expect(proc.checkPages(addr, 4, 12)).toEqual([0, 1, 2, 3]);
    const child = proc.fork();
    child.fillPages(addr + P, 1, 99);
    expect(proc.checkPages(addr, 4, 11)).toEqual([]);
    expect(child.checkPages(addr + P, 1, 99)).toEqual([]);
    const childPfn = pteFrame(system.kernel.pt.read(child.mm.root, addr / P + 1));
    expect(system.kernel.store.holds(childPfn, pageValue(99, 0))).toBe(true);
    expect(child.checkPages(addr, 4, 11)).toEqual([1]);
    expect(() => proc.read(addr, 4)).toThrow(NoBytesError);
    expect(() => proc.write(addr, new Uint8Array(4))).toThrow(NoBytesError);
    expect(proc.checkPages(addr, 4, 11)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("pageValue differs per page and per seed, and is never zero", () => {
    const values = new Set<number>();
    for (let seed = 0; seed < 4; seed++) for (let i = 0; i < 64; i++) values.add(pageValue(seed, i));
    expect(values.size).toBe(256);
    expect(values.has(0)).toBe(false);
  });
});
