/**
 * FreeFrames against a plain reference, a sorted list of the free frames: random sequences of adds,
 * range adds, takes and grows must leave the same set, with takeLowest always returning the reference's
 * smallest frame (or -1 when it is empty) and size, has and capacity agreeing after every step.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import { FreeFrames } from "../../src/base/free_frames.js";

type Step =
  | { kind: "add"; frame: number }
  | { kind: "addRange"; from: number; length: number }
  | { kind: "take" }
  | { kind: "grow"; by: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  // Up to a few thousand frames, so that the summary level (one bit per 1024 frames) has several words.
  fc.record({ kind: fc.constant("add" as const), frame: fc.nat(4000) }),
  fc.record({ kind: fc.constant("addRange" as const), from: fc.nat(4000), length: fc.nat(300) }),
  { arbitrary: fc.record({ kind: fc.constant("take" as const) }), weight: 3 },
  fc.record({ kind: fc.constant("grow" as const), by: fc.nat(2000) }),
);

describe("FreeFrames", () => {
  it("hands out the lowest free frame and agrees with a sorted-list reference", () => {
    fc.assert(
      fc.property(fc.nat(3000), fc.array(step, { maxLength: 120 }), (initial, steps) => {
        const frames = new FreeFrames(initial);
        const reference = new Set<number>();
        let capacity = Math.ceil(initial / 32) * 32;
        for (const s of steps) {
          if (s.kind === "add") {
            // Adding a frame already free, or outside the capacity, is refused and changes nothing.
            if (s.frame >= capacity || reference.has(s.frame)) {
              expect(() => frames.add(s.frame)).toThrow(AssertionError);
            } else {
              frames.add(s.frame);
              reference.add(s.frame);
            }
          } else if (s.kind === "addRange") {
            const to = s.from + s.length;
            let clash = false;
            for (let f = s.from; f < to; f++) clash ||= reference.has(f);
            if (to > capacity || clash) continue;
            frames.addRange(s.from, to);
            for (let f = s.from; f < to; f++) reference.add(f);
          } else if (s.kind === "take") {
            const lowest = reference.size === 0 ? -1 : Math.min(...reference);
            expect(frames.takeLowest()).toBe(lowest);
            reference.delete(lowest);
          } else {
            frames.grow(capacity + s.by);
            capacity = Math.max(capacity, Math.ceil((capacity + s.by) / 32) * 32);
          }
          expect(frames.size).toBe(reference.size);
          expect(frames.capacity).toBe(capacity);
        }
        for (let f = -1; f <= capacity; f++) expect(frames.has(f)).toBe(reference.has(f));
      }),
      { numRuns: 300 },
    );
  });

  it("takes whole words of a range in order and reports a range that overlaps free frames", () => {
    const frames = new FreeFrames(100);
    frames.addRange(3, 70);
    expect(frames.size).toBe(67);
    expect([frames.takeLowest(), frames.takeLowest()]).toEqual([3, 4]);
    expect(() => frames.addRange(60, 64)).toThrow(/freed twice/);
    expect(() => frames.addRange(64, 200)).toThrow(/outside the free set/);
    frames.add(4);
    expect(frames.takeLowest()).toBe(4);
  });
});
