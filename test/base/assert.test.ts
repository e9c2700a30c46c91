import { describe, expect, it } from "vitest";
import { AssertionError, assert, assertIndex, assertNever, fail } from "../../src/base/assert.js";

describe("assert", () => {
  it("passes a true condition without computing details", () => {
    let computed = false;
    assert(true, "never", () => {
      computed = true;
      return "x";
    });
    expect(computed).toBe(false);
  });

  it("throws AssertionError with the message and the details", () => {
    expect(() => assert(false, "pfn out of range")).toThrow(new AssertionError("pfn out of range"));
    expect(() => assert(0, "pfn out of range", () => "pfn 9")).toThrow("pfn out of range: pfn 9");
    expect(() => fail("boom")).toThrow(AssertionError);
  });

  it("assertNever names the unexpected value", () => {
    expect(() => assertNever("bogus" as never, "protocol")).toThrow("unexpected protocol: bogus");
  });

  it("assertIndex accepts only non-negative safe integers", () => {
    expect(() => assertIndex(0, "pfn")).not.toThrow();
    expect(() => assertIndex(2 ** 40, "pfn")).not.toThrow();
    expect(() => assertIndex(-1, "pfn")).toThrow("pfn must be a non-negative integer: -1");
    expect(() => assertIndex(0.5, "vpn")).toThrow(AssertionError);
    expect(() => assertIndex(2 ** 53, "vpn")).toThrow(AssertionError);
  });
});
