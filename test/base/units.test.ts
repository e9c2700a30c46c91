import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import {
  addrToVpn,
  asPfn,
  asVpn,
  formatBytes,
  isPageAligned,
  PAGE_SIZE,
  pageAlignUp,
  parseBytes,
  parsePages,
  SizeError,
  TASK_SIZE,
  vpnToAddr,
} from "../../src/base/units.js";

describe("parseBytes", () => {
  it("reads binary units", () => {
    expect(parseBytes("4KiB")).toBe(4096);
    expect(parseBytes("2MiB")).toBe(2 * 1024 * 1024);
    expect(parseBytes("1GiB")).toBe(2 ** 30);
    expect(parseBytes("1TiB")).toBe(2 ** 40);
    expect(parseBytes("1.5GiB")).toBe(1.5 * 2 ** 30);
  });

  it("reads plain byte counts, with or without B, and tolerates spaces", () => {
    expect(parseBytes("4096")).toBe(4096);
    expect(parseBytes("4096B")).toBe(4096);
    expect(parseBytes(" 2 MiB ")).toBe(2 ** 21);
    expect(parseBytes(0)).toBe(0);
    expect(parseBytes(8192)).toBe(8192);
  });

  it("refuses an unknown unit and names it", () => {
    expect(() => parseBytes("12XB")).toThrow(SizeError);
    expect(() => parseBytes("12XB")).toThrow(
      'size "12XB" has unknown unit "XB"; use B, KiB, MiB, GiB or TiB',
    );
  });

  it("refuses decimal units rather than guessing", () => {
    expect(() => parseBytes("4KB")).toThrow(/unknown unit "KB"/);
    expect(() => parseBytes("1MB")).toThrow(/unknown unit "MB"/);
  });

  it("refuses text that is not a number", () => {
    expect(() => parseBytes("abc")).toThrow(SizeError);
    expect(() => parseBytes("abc")).toThrow(/size "abc" is not a number with a unit such as 4KiB/);
    expect(() => parseBytes("")).toThrow(SizeError);
    expect(() => parseBytes("-4KiB")).toThrow(SizeError);
    expect(() => parseBytes("4 KiB B")).toThrow(SizeError);
  });

  it("refuses fractional bytes", () => {
    expect(() => parseBytes("1.5")).toThrow('size "1.5" is not a whole number of bytes');
    expect(() => parseBytes("1.5B")).toThrow(/not a whole number of bytes/);
    expect(() => parseBytes("0.1KiB")).toThrow(/not a whole number of bytes/);
    expect(() => parseBytes(1.5)).toThrow("size 1.5 is not a whole number of bytes");
    expect(() => parseBytes(-1)).toThrow(SizeError);
    expect(() => parseBytes(Number.NaN)).toThrow(SizeError);
  });

  it("refuses sizes beyond exact doubles", () => {
    expect(() => parseBytes("100000TiB")).toThrow(/not a whole number of bytes/);
  });
});

describe("formatBytes", () => {
  it("uses the largest unit that divides evenly", () => {
    expect(formatBytes(2097152)).toBe("2MiB");
    expect(formatBytes(4096)).toBe("4KiB");
    expect(formatBytes(2 ** 30 + 2 ** 20)).toBe("1025MiB");
    expect(formatBytes(4097)).toBe("4097B");
    expect(formatBytes(0)).toBe("0B");
  });

  it("round-trips through parseBytes", () => {
    for (const bytes of [1, 4096, 3 * 2 ** 20, 5 * 2 ** 40, 12345])
      expect(parseBytes(formatBytes(bytes))).toBe(bytes);
  });
});

describe("parsePages", () => {
  it("returns a page count", () => {
    expect(parsePages("16MiB", "ram")).toBe(4096);
    expect(parsePages(8192, "ram")).toBe(2);
  });

  it("refuses zero and sizes that are not whole pages, naming what was asked for", () => {
    expect(() => parsePages("0", "ram")).toThrow("ram 0 is not a positive multiple of 4096 bytes");
    expect(() => parsePages("4097", "ram")).toThrow(/ram 4097 is not a positive multiple/);
    expect(() => parsePages("6KiB", "device memory")).toThrow(/device memory 6KiB/);
  });
});

describe("page numbers and addresses", () => {
  it("converts between addresses and vpns, above 2^32 too", () => {
    expect(addrToVpn(0)).toBe(0);
    expect(addrToVpn(4095)).toBe(0);
    expect(addrToVpn(4096)).toBe(1);
    expect(addrToVpn(2 ** 40 + 4096 + 17)).toBe(2 ** 28 + 1);
    expect(vpnToAddr(2 ** 28 + 1)).toBe(2 ** 40 + 4096);
    expect(addrToVpn(TASK_SIZE)).toBe(TASK_SIZE / PAGE_SIZE);
  });

  it("aligns and checks alignment", () => {
    expect(pageAlignUp(1)).toBe(4096);
    expect(pageAlignUp(4096)).toBe(4096);
    expect(pageAlignUp(0)).toBe(0);
    expect(pageAlignUp(2 ** 40 + 1)).toBe(2 ** 40 + 4096);
    expect(isPageAligned(2 ** 40)).toBe(true);
    expect(isPageAligned(2 ** 40 + 8)).toBe(false);
  });

  it("brands only non-negative integers", () => {
    expect(asVpn(7)).toBe(7);
    expect(asPfn(0)).toBe(0);
    expect(() => asVpn(-1)).toThrow(AssertionError);
    expect(() => asPfn(1.5)).toThrow(AssertionError);
    expect(() => asPfn(2 ** 53)).toThrow(/a pfn is a non-negative integer: 9007199254740992/);
  });
});
