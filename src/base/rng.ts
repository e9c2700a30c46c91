/**
 * A small seeded generator (SplitMix32 seeding xorshift128+ style state in 32-bit words). Every random
 * choice in hmmsim comes from one of these, so a run replays from its seed.
 */
import { assert } from "./assert.js";

/** A seeded pseudo-random generator: the same seed gives the same sequence, so runs replay. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    assert(Number.isSafeInteger(seed), "rng seed must be an integer", () => String(seed));
    let x = seed >>> 0 || 0x9e3779b9;
    const next = (): number => {
      // SplitMix32: spreads one seed over four words of state.
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  /** Next 32-bit unsigned value (xoshiro128**). */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform integer in [0, bound). */
  below(bound: number): number {
    assert(Number.isSafeInteger(bound) && bound > 0 && bound <= 2 ** 32, "rng bound out of range", () =>
      String(bound),
    );
    return Math.floor((this.nextU32() / 2 ** 32) * bound);
  }

  /** Uniform float in [0, 1). */
  nextFloat(): number {
    return this.nextU32() / 2 ** 32;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
