/**
 * Page numbers and byte sizes. Addresses are numbers (doubles): exact below 2^53, which covers the
 * 48-bit virtual address space. Shifts in JS truncate to 32 bits, so page numbers are computed with
 * division, never with `>>`.
 */
import { assert } from "./assert.js";

/** log2 of PAGE_SIZE. */
export const PAGE_SHIFT = 12;
/** Bytes in a page (4 KiB, as on x86-64). */
export const PAGE_SIZE = 4096;
/** Entries in one page-table node at every level (x86-64, 4 KiB pages). */
export const PTRS_PER_TABLE = 512;
/** A PMD covers this many pages. */
export const PAGES_PER_PMD = 512;
/** Top of a 48-bit user address space, as on x86-64 (TASK_SIZE rounded to a page). */
export const TASK_SIZE = 2 ** 47 - PAGE_SIZE;

declare const vpnBrand: unique symbol;
declare const pfnBrand: unique symbol;
/** Virtual page number: a user virtual address divided by PAGE_SIZE. */
export type Vpn = number & { readonly [vpnBrand]: true };
/** Physical frame number: an index into struct page and the page store. */
export type Pfn = number & { readonly [pfnBrand]: true };

/** Brands a non-negative integer as a virtual page number; asserts that it is one. */
export function asVpn(value: number): Vpn {
  assert(Number.isSafeInteger(value) && value >= 0, "a vpn is a non-negative integer", () => String(value));
  return value as Vpn;
}

/** Brands a non-negative integer as a page frame number; asserts that it is one. */
export function asPfn(value: number): Pfn {
  assert(Number.isSafeInteger(value) && value >= 0, "a pfn is a non-negative integer", () => String(value));
  return value as Pfn;
}

/** PAGE_ALIGNED: whether a byte address is a multiple of PAGE_SIZE. */
export function isPageAligned(address: number): boolean {
  return address % PAGE_SIZE === 0;
}

/** The page that holds a byte address (PAGE_MASK applied, then shifted). */
export function addrToVpn(address: number): Vpn {
  return Math.floor(address / PAGE_SIZE) as Vpn;
}

/** The byte address of the first byte of a virtual page. */
export function vpnToAddr(vpn: Vpn | number): number {
  return vpn * PAGE_SIZE;
}

/** Rounds a byte count up to whole pages, as PAGE_ALIGN does. */
export function pageAlignUp(bytes: number): number {
  return Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE;
}

const sizeUnits: Readonly<Record<string, number>> = {
  B: 1,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
};

/** Thrown for a byte size that cannot be read; the message names the text and why. */
export class SizeError extends Error {
  override readonly name = "SizeError";
}

/**
 * Reads a byte size: a plain integer of bytes, or a number with a binary unit ("4KiB", "2MiB",
 * "1.5GiB"). Decimal units (KB, MB) are refused rather than guessed at.
 */
export function parseBytes(text: string | number): number {
  if (typeof text === "number") {
    if (!Number.isSafeInteger(text) || text < 0)
      throw new SizeError(`size ${text} is not a whole number of bytes`);
    return text;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (match === null)
    throw new SizeError(`size "${text}" is not a number with a unit such as 4KiB, 2MiB or 1GiB`);
  const unit = match[2] === "" ? "B" : match[2]!;
  const scale = sizeUnits[unit];
  if (scale === undefined) {
    throw new SizeError(`size "${text}" has unknown unit "${unit}"; use B, KiB, MiB, GiB or TiB`);
  }
  const bytes = Number(match[1]) * scale;
  if (!Number.isSafeInteger(bytes)) throw new SizeError(`size "${text}" is not a whole number of bytes`);
  return bytes;
}

/** Formats a byte count with the largest binary unit that divides it evenly, e.g. 2097152 → "2MiB". */
export function formatBytes(bytes: number): string {
  for (const unit of ["TiB", "GiB", "MiB", "KiB"]) {
    const scale = sizeUnits[unit]!;
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return `${bytes}B`;
}

/** Reads a size that must be a positive whole number of pages, returning the page count. */
export function parsePages(text: string | number, what: string): number {
  const bytes = parseBytes(text);
  if (bytes === 0 || bytes % PAGE_SIZE !== 0) {
    throw new SizeError(`${what} ${String(text)} is not a positive multiple of ${PAGE_SIZE} bytes`);
  }
  return bytes / PAGE_SIZE;
}
