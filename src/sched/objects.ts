/**
 * Names for the shared objects a scheduling point touches. The explorer's partial-order reduction
 * asks whether two steps touch a common object (if not, they commute); reports print the object in
 * words. An object is one number, `kind * 2^32 + index`, so that recording one costs no allocation.
 */

/** A lock with an identity of its own (a Lock or RwSem), numbered by the scheduler as created. */
export const OBJ_LOCK = 1;
/** A PTE table: its entries and its split page-table lock. */
export const OBJ_PTE_TABLE = 2;
/** A struct page by pfn: its refcount, mapcount, flags, lock bit and contents. */
export const OBJ_PAGE = 3;
/** The TLBs' entries for one mm, on every CPU (a lookup on one CPU and a flush from another meet here). */
export const OBJ_TLB = 4;
/** A device's mirror of one mm (its device page table). */
export const OBJ_MIRROR = 5;
/** Anything else a model or a user driver names through Scheduler.nameObject. */
export const OBJ_NAMED = 6;

/** A PMD slot (by its PageTables key): its huge leaf, whether a PTE table hangs there, and its PMD lock. */
export const OBJ_PMD = 7;

const KIND_SCALE = 2 ** 32;

/** The object number of the `index`th object of `kind` (an OBJ_* value). */
export function objectId(kind: number, index: number): number {
  return kind * KIND_SCALE + index;
}

/** The OBJ_* kind of an object number. */
export function objectKind(object: number): number {
  return Math.floor(object / KIND_SCALE);
}

/** The index of an object number within its kind. */
export function objectIndex(object: number): number {
  return object % KIND_SCALE;
}

/** The object of page `pfn` (OBJ_PAGE). */
export function pageObject(pfn: number): number {
  return OBJ_PAGE * KIND_SCALE + pfn;
}

/** The object of PTE table `table` (OBJ_PTE_TABLE). */
export function pteTableObject(table: number): number {
  return OBJ_PTE_TABLE * KIND_SCALE + table;
}

/** The object of the PMD slot with PageTables key `pmdKey` (OBJ_PMD). */
export function pmdObject(pmdKey: number): number {
  return OBJ_PMD * KIND_SCALE + pmdKey;
}

/** The object of the TLB entries of mm `mmId` (OBJ_TLB). */
export function tlbObject(mmId: number): number {
  return OBJ_TLB * KIND_SCALE + mmId;
}
