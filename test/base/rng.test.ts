import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import { Rng } from "../../src/base/rng.js";

function draws(rng: Rng, count: number): number[] {
  return Array.from({ length: count }, () => rng.nextU32());
}

describe("Rng", () => {
  it("replays the same sequence from the same seed", () => {
    expect(draws(new Rng(42), 100)).toEqual(draws(new Rng(42), 100));
  });

  it("gives different sequences for different seeds, zero included", () => {
    const a = draws(new Rng(1), 16);
    const b = draws(new Rng(2), 16);
    const zero = draws(new Rng(0), 16);
    expect(a).not.toEqual(b);
    expect(zero).not.toEqual(a);
    expect(new Set(zero).size).toBe(16);
  });

  it("returns unsigned 32-bit values", () => {
    for (const value of draws(new Rng(7), 1000)) {
      expect(Number.isInteger(value)).toBe(true);
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(2 ** 32);
    }
  });

  it("below(bound) stays in [0, bound) and covers it evenly", () => {
    const rng = new Rng(3);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 8000; i++) counts[rng.below(4)]!++;
    for (const count of counts) {
      expect(count).toBeGreaterThan(1700);
      expect(count).toBeLessThan(2300);
    }
    expect(new Rng(3).below(1)).toBe(0);
  });

  it("nextFloat stays in [0, 1)", () => {
    const rng = new Rng(9);
    for (let i = 0; i < 1000; i++) {
      const x = rng.nextFloat();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
  });

  it("refuses bad seeds and bounds", () => {
    expect(() => new Rng(1.5)).toThrow(AssertionError);
    const rng = new Rng(1);
    expect(() => rng.below(0)).toThrow(/rng bound out of range: 0/);
    expect(() => rng.below(2 ** 32 + 1)).toThrow(AssertionError);
    expect(() => rng.below(2.5)).toThrow(AssertionError);
  });
});
