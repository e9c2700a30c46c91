import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import { CopyBatch, MemcpyEngine } from "../../src/drivers/copy_engine.js";
import { BytesStore } from "../../src/mm/page_store.js";

describe("memcpy copy engine", () => {
  it("runs a batch's copies in the order queued, empties it and counts the pages", () => {
    const store = new BytesStore(16);
    const engine = new MemcpyEngine(store);
    store.fill(1, 0x11111111);
    store.fill(2, 0x22222222);
    const batch = new CopyBatch(4);
    // 1 -> 5, then 5 -> 6: the second copy sees the first one's result only if order is kept.
    batch.add(5, 1);
    batch.add(6, 5);
    batch.add(7, 2);
    engine.copyPages(batch);
    expect([store.holds(5, 0x11111111), store.holds(6, 0x11111111), store.holds(7, 0x22222222)]).toEqual([
      true,
      true,
      true,
    ]);
    expect(batch.count).toBe(0);
    expect(engine.pagesMoved).toBe(3);
    engine.copyPages(batch);
    expect(engine.pagesMoved).toBe(3);
  });

  it("refuses more copies than the batch holds, and a batch of no size", () => {
    const batch = new CopyBatch(1);
    batch.add(3, 2);
    expect(() => batch.add(4, 2)).toThrow(AssertionError);
    expect(batch.count).toBe(1);
    expect(() => new CopyBatch(0)).toThrow(/bad copy batch size/);
  });
});
