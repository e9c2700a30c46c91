import { describe, expect, it } from "vitest";
import {
  intArg,
  isByteBuffer,
  isRegisterValue,
  loffArg,
  storedInteger,
  ulongArg,
} from "../../src/base/abi.js";
import { EFBIG, EOPNOTSUPP, ESRCH } from "../../src/base/errno.js";

describe("the C ABI of hmmsim's system calls", () => {
  it("an integer number from -2^63 to 2^64 - 1 is a register value, taken mod 2^64 as unsigned long", () => {
    expect(ulongArg(0)).toBe(0n);
    expect(ulongArg(-4096)).toBe((1n << 64n) - 4096n);
    expect(ulongArg(-(2 ** 63))).toBe(1n << 63n);
    // Integers above 2^53 are exact doubles and pass unchanged.
    expect(ulongArg(2 ** 53 + 2)).toBe(2n ** 53n + 2n);
    expect(ulongArg(2 ** 64 - 2048)).toBe(2n ** 64n - 2048n);
  });

  it("nothing else is: NaN, infinities, fractions, BigInts, strings, null, out-of-range integers", () => {
    for (const value of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      1.5,
      -0.5,
      1n,
      "1",
      null,
      undefined,
      {},
      2 ** 64,
    ]) {
      expect(isRegisterValue(value), String(value)).toBe(false);
      expect(ulongArg(value)).toBeNull();
      expect(loffArg(value)).toBeNull();
      expect(intArg(value)).toBeNull();
    }
    expect(ulongArg(-(2 ** 63) - 4096)).toBeNull();
  });

  it("an int is the low 32 bits, sign-extended; a loff_t the 64 bits as signed", () => {
    expect(intArg(2 ** 32 + 4)).toBe(4);
    expect(intArg(2 ** 31)).toBe(-(2 ** 31));
    expect(intArg(-1)).toBe(-1);
    expect(loffArg(2 ** 63)).toBe(-(1n << 63n));
    expect(loffArg(-1)).toBe(-1n);
  });

  it("stores keep the low bits; BigInts only where 64 bits are stored", () => {
    expect(storedInteger(2 ** 32 + 5, 32)).toBe(5n);
    expect(storedInteger(-1, 32)).toBe(0xffff_ffffn);
    expect(storedInteger(-1n, 64)).toBe((1n << 64n) - 1n);
    expect(storedInteger(5n, 32)).toBeNull();
    expect(storedInteger(1n << 64n, 64)).toBeNull();
    expect(storedInteger(1.5, 64)).toBeNull();
  });

  it("a buffer is a Uint8Array (a Node Buffer is one)", () => {
    expect(isByteBuffer(new Uint8Array(1))).toBe(true);
    expect(isByteBuffer(Buffer.from("ab"))).toBe(true);
    for (const value of [new Int8Array(1), new Uint16Array(1), [1], "a", null, new ArrayBuffer(1)]) {
      expect(isByteBuffer(value)).toBe(false);
    }
  });

  it("the errno values it needs match the Linux headers", () => {
    expect([ESRCH, EFBIG, EOPNOTSUPP]).toEqual([3, 27, 95]);
  });
});
