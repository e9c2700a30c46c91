/**
 * The plain reference of process memory both property tests check hmmsim against: a process is a Map
 * from page number to the page's protection, the VMA it belongs to and where its bytes live (its own
 * copy, or a shared object: a tmpfs file or a shared anonymous mapping's shmem object).
 *
 * What it encodes (Linux semantics, with hmmsim's documented difference that VMAs never merge, so a
 * split made by mprotect or munmap stays a boundary):
 * - private anonymous memory reads zeros until written; a private file page shows the file (including
 *   later writes through shared mappings and pwrite) until the process writes it, after which the
 *   process has its own copy (copy-on-write);
 * - a MAP_SHARED page is the object's page: every mapping of it, in every process, sees one copy;
 * - a page at or past the end of its object is SIGBUS in Linux; hmmsim does not check the size there,
 *   so the tests never access such pages (pastEnd);
 * - a VMA changes its flags only whole: mprotect and madvise(MADV_HUGEPAGE/NOHUGEPAGE) split a VMA to
 *   the range only where its flags change (mprotect_fixup, madvise_update_vma return early otherwise).
 *
 * The state here is data only; which system call changes it how lives with each test.
 */

export const PAGE = 4096;
export const ZERO_PAGE = new Uint8Array(PAGE);

export type Kind = "anonPrivate" | "anonShared" | "filePrivate" | "fileShared";

/** Something MAP_SHARED pages live in: a tmpfs file, or one shared anonymous mapping's shmem object. */
export interface SharedObject {
  name: string;
  pages: Map<number, Uint8Array>;
  /** Pages in the object; accesses at or past it are SIGBUS in Linux and skipped by the tests. */
  sizePages: number;
}

export interface RefPage {
  /** Identity of the VMA the page is in (VMAs are maximal runs of one id). */
  vma: number;
  prot: number;
  kind: Kind;
  /** The file or shmem object (every kind but anonPrivate). */
  object: SharedObject | null;
  /** Page offset in `object`. */
  pgoff: number;
  /** The process's own copy (private kinds, once written); null reads through to zeros or the file. */
  own: Uint8Array | null;
  /** The VMA's VM_HUGEPAGE / VM_NOHUGEPAGE flag (MADV_HUGEPAGE, MADV_NOHUGEPAGE, MAP_STACK); absent: neither. */
  thp?: "huge" | "nohuge";
  /**
   * A mapping of a device file (dmirror_fops_mmap): `object` is the zeroed pages it inserted, a
   * filePrivate or fileShared page otherwise. Its VMA is VM_MIXEDMAP, which migrate_vma refuses.
   */
  driver?: true;
  /**
   * Zapped (MADV_DONTNEED) in a device-file mapping: the VMA has no fault handler, so any access is
   * SIGBUS (do_fault: no vm_ops->fault); the tests skip such pages as they skip pastEnd ones.
   */
  gone?: true;
}

/** A process's pages by vpn. */
export type PageMap = Map<number, RefPage>;

/** Hands out VMA identities and shmem objects. */
export class Identities {
  private nextVma = 1;
  private nextObject = 1;

  newVmaId(): number {
    return this.nextVma++;
  }

  newObject(sizePages: number): SharedObject {
    return { name: `shmem-${this.nextObject++}`, pages: new Map(), sizePages };
  }

  /** A copy that continues the same sequences (for trying orders of operations on clones). */
  clone(): Identities {
    const copy = new Identities();
    copy.nextVma = this.nextVma;
    copy.nextObject = this.nextObject;
    return copy;
  }
}

export function isPrivate(kind: Kind): boolean {
  return kind === "anonPrivate" || kind === "filePrivate";
}

/** What the page holds now. */
export function contents(page: RefPage): Uint8Array {
  if (page.own !== null) return page.own;
  if (page.object !== null) return page.object.pages.get(page.pgoff) ?? ZERO_PAGE;
  return ZERO_PAGE;
}

/** The bytes a write to the page goes to (made on first write, as the fault path does). */
export function writable(page: RefPage): Uint8Array {
  if (!isPrivate(page.kind)) {
    const object = page.object!;
    let bytes = object.pages.get(page.pgoff);
    if (bytes === undefined) {
      bytes = new Uint8Array(PAGE);
      object.pages.set(page.pgoff, bytes);
    }
    return bytes;
  }
  if (page.own === null) page.own = contents(page).slice();
  return page.own;
}

/**
 * True when the page lies past the end of its object (SIGBUS in Linux, not modelled), or is a zapped
 * page of a device-file mapping (SIGBUS too): the tests make no access there.
 */
export function pastEnd(page: RefPage): boolean {
  return page.gone === true || (page.object !== null && page.pgoff >= page.object.sizePages);
}

/**
 * isolateRange: every VMA overlapping [start, end) is split at start and end. The part inside and the
 * part after `end` get fresh identities (a fresh identity for an unsplit piece is harmless: a VMA is a
 * maximal run of one identity); the part before `start` keeps the old one.
 */
export function isolate(ids: Identities, pages: PageMap, start: number, end: number): void {
  const inside = new Map<number, number>();
  const after = new Map<number, number>();
  for (const [vpn, page] of pages) {
    if (vpn >= start && vpn < end && !inside.has(page.vma)) {
      inside.set(page.vma, ids.newVmaId());
      after.set(page.vma, ids.newVmaId());
    }
  }
  for (const [vpn, page] of pages) {
    const old = page.vma;
    if (!inside.has(old)) continue;
    if (vpn >= start && vpn < end) page.vma = inside.get(old)!;
    else if (vpn >= end) page.vma = after.get(old)!;
  }
}

/** Removes [start, end) after isolating it. */
export function unmap(ids: Identities, pages: PageMap, start: number, end: number): void {
  isolate(ids, pages, start, end);
  for (const vpn of [...pages.keys()]) if (vpn >= start && vpn < end) pages.delete(vpn);
}

/** The VMA containing vpn as [start, end), or null. */
export function vmaAt(pages: PageMap, vpn: number): { start: number; end: number; id: number } | null {
  const page = pages.get(vpn);
  if (page === undefined) return null;
  let start = vpn;
  while (pages.get(start - 1)?.vma === page.vma) start--;
  let end = vpn + 1;
  while (pages.get(end)?.vma === page.vma) end++;
  return { start, end, id: page.vma };
}

export function anyMapped(pages: PageMap, start: number, end: number): boolean {
  for (let vpn = start; vpn < end; vpn++) if (pages.has(vpn)) return true;
  return false;
}

export function fullyMapped(pages: PageMap, start: number, end: number): boolean {
  for (let vpn = start; vpn < end; vpn++) if (!pages.has(vpn)) return false;
  return true;
}

/** A deep copy of a page map whose shared objects are replaced through `objects` (old → new). */
export function clonePages(pages: PageMap, objects: Map<SharedObject, SharedObject>): PageMap {
  const copy: PageMap = new Map();
  for (const [vpn, page] of pages) {
    copy.set(vpn, {
      ...page,
      object: page.object === null ? null : (objects.get(page.object) ?? page.object),
      own: page.own?.slice() ?? null,
    });
  }
  return copy;
}

/** A deep copy of a shared object. */
export function cloneObject(object: SharedObject): SharedObject {
  const pages = new Map<number, Uint8Array>();
  for (const [pgoff, bytes] of object.pages) pages.set(pgoff, bytes.slice());
  return { name: object.name, pages, sizePages: object.sizePages };
}

/** Bytes of `length` from a seed, distinct per seed and position (never all zero). */
export function pattern(seed: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed * 131 + i * 7 + 1) & 255;
  return bytes;
}

/** A page whose every 32-bit word is `value` (little endian), as Process.fillPages leaves it. */
export function filledPage(value: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  new Uint32Array(page.buffer).fill(value >>> 0);
  return page;
}

/** The page's first 32-bit word, little endian: what the tokens store keeps and a device READ reports. */
export function firstWord(bytes: Uint8Array): number {
  return (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24)) >>> 0;
}

export function hex(vpn: number): string {
  return `0x${(vpn * PAGE).toString(16)}`;
}

/**
 * mprotect_fixup over [start, end), all mapped: each VMA piece whose protection changes is split to
 * the range and changed; a piece that already has `prot` stays as it is, unsplit (mprotect_fixup
 * returns early when newflags == vma->vm_flags).
 */
export function protect(ids: Identities, pages: PageMap, start: number, end: number, prot: number): void {
  let vpn = start;
  while (vpn < end) {
    const id = pages.get(vpn)!.vma;
    let pieceEnd = vpn;
    while (pieceEnd < end && pages.get(pieceEnd)!.vma === id) pieceEnd++;
    if (pages.get(vpn)!.prot !== prot) {
      isolate(ids, pages, vpn, pieceEnd);
      for (let v = vpn; v < pieceEnd; v++) pages.get(v)!.prot = prot;
    }
    vpn = pieceEnd;
  }
}

/**
 * move_vma: `moved` pages from oldStart become one new VMA of `newPages` at newStart (the target
 * already unmapped by the caller); pages past the moved ones continue the last page's object, as a
 * grown mapping does.
 */
export function movePages(
  ids: Identities,
  pages: PageMap,
  oldStart: number,
  moved: number,
  newStart: number,
  newPages: number,
): void {
  isolate(ids, pages, oldStart, oldStart + moved);
  const id = ids.newVmaId();
  const movedPages: RefPage[] = [];
  for (let i = 0; i < moved; i++) {
    movedPages.push(pages.get(oldStart + i)!);
    pages.delete(oldStart + i);
  }
  movedPages.forEach((page, i) => {
    page.vma = id;
    pages.set(newStart + i, page);
  });
  const last = movedPages[moved - 1]!;
  for (let i = moved; i < newPages; i++)
    pages.set(newStart + i, { ...last, pgoff: last.pgoff + (i - (moved - 1)), own: null });
}

/**
 * hugepage_madvise and madvise_update_vma over the mapped pages of [start, end): each VMA piece whose
 * VM_HUGEPAGE/VM_NOHUGEPAGE flag changes is split to the range and changed; the others stay unsplit.
 */
export function adviseHuge(
  ids: Identities,
  pages: PageMap,
  start: number,
  end: number,
  thp: "huge" | "nohuge",
): void {
  let vpn = start;
  while (vpn < end) {
    const page = pages.get(vpn);
    if (page === undefined) {
      vpn++;
      continue;
    }
    let pieceEnd = vpn;
    while (pieceEnd < end && pages.get(pieceEnd)?.vma === page.vma) pieceEnd++;
    if (page.thp !== thp) {
      isolate(ids, pages, vpn, pieceEnd);
      for (let v = vpn; v < pieceEnd; v++) pages.get(v)!.thp = thp;
    }
    vpn = pieceEnd;
  }
}
