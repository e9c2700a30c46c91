/**
 * The operations the surface property test generates, and the fast-check generators for them.
 *
 * A sequence starts with a prologue (process 0 maps 4 to 8 pages, perhaps fills them, and opens a
 * device), so that most calls find memory and a device file. An address is relative to what is mapped
 * (Where): a mapped page chosen by `anchor`, moved by `delta` pages, so that most calls land on
 * mappings and some beside or past them. Ranges are 1 to 4 pages mostly (the windows of issue 8 need
 * no more), sometimes 0 or up to 8. A `bad` argument replaces one argument of a call with a hostile
 * value (negative, unaligned, NaN, fractional, huge, a string, null, a BigInt, a short buffer...); the
 * reference predicts the errno the ABI rule and the kernel's checks give it (kernel-checks.ts). Two
 * short chunks make rare paths likely: process 0 forking and exiting (its child's descriptors then
 * outlive the mm they mirror), FAIL_ALLOC armed between a migration to the device and a CPU
 * access of those pages, and EXCLUSIVE, CHECK_EXCLUSIVE, a CPU access and CHECK_EXCLUSIVE again.
 * An open's `device` is taken modulo the system's devices (2 under 4.14; under modern a third,
 * device-coherent one): other minors come only as hostile values.
 *
 * HMMSIM_FUZZ_OPS (a comma list of op names, e.g. "mm,cpu,device,fork") restricts what is generated,
 * to chase one kind of defect; the groups are in OP_GROUPS, "dev:toDevice" names one device command
 * and "group:NAME" allows NAME only in concurrent groups. HMMSIM_FUZZ_HOSTILE=0 generates no hostile
 * arguments, a list of op names keeps them for those ops only.
 */
import fc from "fast-check";
import {
  MADV_COLD,
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_HWPOISON,
  MADV_NOHUGEPAGE,
  MADV_WILLNEED,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../../../src/mm/mmap.js";
import type { Kind } from "./pages.js";

/** An address relative to what is mapped: a mapped page chosen by `anchor`, moved by `delta` pages. */
export interface Where {
  anchor: number;
  delta: number;
  /** Byte offset in the page (byte accesses only). */
  offset: number;
}

/** A hostile value for one argument. */
export type Hostile =
  | { kind: "number"; value: number }
  | { kind: "string"; value: string }
  | { kind: "null" }
  | { kind: "undefined" }
  | { kind: "bigint"; value: bigint }
  | { kind: "object" }
  | { kind: "shortBuffer" }
  | { kind: "longString" }
  | { kind: "array" };

export interface Bad {
  /** Which argument, by the name the op's semantics gives it. */
  arg: string;
  value: Hostile;
}

export type DeviceCommand =
  | "read"
  | "write"
  | "toDevice"
  | "toSystem"
  | "snapshot"
  | "flags"
  | "release"
  | "exclusive"
  | "checkExclusive";

export type Op =
  | {
      op: "mmap";
      p: number;
      kind: Kind;
      file: number;
      prot: number;
      place: "any" | "fixed" | "noreplace";
      at: Where;
      pages: number;
      fileOffset: number;
      bad: Bad | null;
    }
  | {
      /** mmap of a device file (dmirror_fops_mmap): `fd` picks a descriptor, perhaps not the caller's. */
      op: "mmapDevice";
      p: number;
      fd: number;
      shared: boolean;
      prot: number;
      place: "any" | "fixed";
      at: Where;
      pages: number;
    }
  | { op: "munmap"; p: number; at: Where; pages: number; bad: Bad | null }
  | { op: "mprotect"; p: number; at: Where; pages: number; prot: number; bad: Bad | null }
  | {
      op: "mremap";
      p: number;
      at: Where;
      oldPages: number;
      newPages: number;
      /** new_len = old_len (after fitting), as MREMAP_DONTUNMAP and remap_move need. */
      sameSize: boolean;
      /** The old range is not cut to one VMA (a shrink or remap_move may cross VMAs). */
      acrossVmas: boolean;
      flags: number;
      to: Where;
      bad: Bad | null;
    }
  | { op: "madvise"; p: number; at: Where; pages: number; advice: number; bad: Bad | null }
  | { op: "fork"; p: number }
  | { op: "exit"; p: number }
  | { op: "write"; p: number; at: Where; length: number; seed: number; bad: Bad | null }
  | { op: "read"; p: number; at: Where; length: number; bad: Bad | null }
  | {
      op: "word";
      p: number;
      at: Where;
      width: 32 | 64;
      write: boolean;
      value: number;
      /** writeU64 with a number rather than a BigInt (any 64-bit integer, as C converts it). */
      asNumber: boolean;
      bad: Bad | null;
    }
  | { op: "fill"; p: number; at: Where; pages: number; seed: number; bad: Bad | null }
  | { op: "check"; p: number; at: Where; pages: number; seed: number; bad: Bad | null }
  | { op: "touch"; p: number; at: Where; pages: number; write: boolean; bad: Bad | null }
  | {
      op: "pin";
      p: number;
      at: Where;
      pages: number;
      write: boolean;
      /** FOLL_LONGTERM: a device-coherent page is migrated to RAM before it is pinned. */
      longterm: boolean;
      bad: Bad | null;
    }
  | { op: "unpin"; pin: number; bad: Bad | null }
  | { op: "createFile"; pages: number; extraBytes: number; bad: Bad | null }
  | {
      op: "pwrite";
      file: number;
      offset: number;
      /** The offset counts from the file's end (the edges: at, just before and just past EOF). */
      fromEnd: boolean;
      length: number;
      seed: number;
      bad: Bad | null;
    }
  | { op: "pread"; file: number; offset: number; fromEnd: boolean; length: number; bad: Bad | null }
  | { op: "open"; device: number; p: number; exited: boolean; bad: Bad | null }
  | { op: "close"; fd: number }
  | {
      op: "dev";
      fd: number;
      cmd: DeviceCommand;
      at: Where;
      pages: number;
      seed: number;
      /** READ, MIGRATE_TO_DEV and SNAPSHOT get a caller buffer (cmd->ptr), prefilled, to check. */
      into: boolean;
      bad: Bad | null;
    }
  | {
      op: "onExited";
      p: number;
      call: "mmap" | "munmap" | "fork" | "exit" | "read" | "fill" | "pin" | "unpin";
    }
  | { op: "cpuStore"; p: number; at: Where; value: number }
  | { op: "cpuLoad"; p: number; at: Where };

/** The operations the concurrent mode runs as threads. */
export type ConcurrentOp = Extract<
  Op,
  { op: "dev" | "close" | "cpuStore" | "cpuLoad" | "munmap" | "mprotect" | "madvise" | "fork" }
>;

export type Step = Op | { op: "concurrent"; ops: ConcurrentOp[]; seed: number };

/** Op names by group, for HMMSIM_FUZZ_OPS. */
export const OP_GROUPS: Readonly<Record<string, readonly string[]>> = {
  mm: ["mmap", "munmap", "mprotect", "mremap", "madvise"],
  cpu: ["write", "read", "word", "fill", "check", "touch", "cpuStore", "cpuLoad"],
  pin: ["pin", "unpin"],
  file: ["createFile", "pwrite", "pread"],
  device: ["open", "close", "dev", "mmapDevice"],
  process: ["fork", "exit", "onExited"],
};

/**
 * The op names HMMSIM_FUZZ_OPS allows (every op when it is unset). A name applies to sequential steps
 * and to the members of concurrent groups; "group:NAME" allows NAME in groups only.
 */
export function allowedOps(spec: string | undefined): Set<string> | null {
  if (spec === undefined || spec.trim() === "") return null;
  const allowed = new Set<string>();
  for (const word of spec.split(",").map((part) => part.trim())) {
    const groupOnly = word.startsWith("group:");
    const bare = groupOnly ? word.slice("group:".length) : word;
    // "dev:CMD" allows the dev op with that command only (commands listed together add up).
    const names = bare.startsWith("dev:") ? ["dev", bare] : (OP_GROUPS[bare] ?? [bare]);
    for (const name of names) {
      allowed.add(`group:${name}`);
      if (!groupOnly) allowed.add(name);
    }
  }
  return allowed;
}

// ---------------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------------

/**
 * Whether calls get hostile arguments and sizes of 0: HMMSIM_FUZZ_HOSTILE=0 turns them off (to chase
 * defects that the many argument-checking findings would otherwise hide behind), a comma list of op
 * names keeps hostile arguments for those ops only.
 */
const HOSTILE_SPEC = process.env.HMMSIM_FUZZ_HOSTILE;
const HOSTILE = HOSTILE_SPEC !== "0";
const HOSTILE_OPS =
  HOSTILE_SPEC === undefined || HOSTILE_SPEC === "0" || HOSTILE_SPEC === "1"
    ? null
    : new Set(HOSTILE_SPEC.split(","));
/** Weight of a size of 0 among sizes. */
const ZERO_WEIGHT = HOSTILE ? 1 : 0;

const where: fc.Arbitrary<Where> = fc.record({
  anchor: fc.nat({ max: 1000 }),
  // Mostly on a mapped page, sometimes just beside or past one.
  delta: fc.oneof(
    { weight: 8, arbitrary: fc.constant(0) },
    { weight: 2, arbitrary: fc.integer({ min: -2, max: 2 }) },
    { weight: 1, arbitrary: fc.integer({ min: -4, max: 8 }) },
  ),
  offset: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 64 }) },
    { weight: 1, arbitrary: fc.integer({ min: 4096 - 64, max: 4095 }) },
  ),
});
const proc = fc.nat({ max: 99 });
/** 1 to 4 pages mostly; sometimes 0 or up to 8. */
const smallPages = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1, max: 4 }) },
  { weight: ZERO_WEIGHT, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 5, max: 8 }) },
);
// x86 lets a CPU read PROT_WRITE-only and PROT_EXEC-only memory; those prots are left out here.
const prot = fc.constantFrom(PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC);
const kind = fc.constantFrom<Kind>(
  "anonPrivate",
  "anonPrivate",
  "anonPrivate",
  "anonShared",
  "filePrivate",
  "fileShared",
);

const hostileNumbers = [
  -1,
  -4096,
  -(2 ** 40) * 4096,
  0.5,
  4096.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  2 ** 40,
  2 ** 47,
  2 ** 52,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 64,
  2 ** 32 + 1,
];
const hostile: fc.Arbitrary<Hostile> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(...hostileNumbers).map((value) => ({ kind: "number" as const, value })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "string" as const, value: "4096" }) },
  { weight: 1, arbitrary: fc.constant({ kind: "null" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "undefined" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "bigint" as const, value: 4096n }) },
  { weight: 1, arbitrary: fc.constant({ kind: "object" as const }) },
);
const hostileBuffer: fc.Arbitrary<Hostile> = fc.constantFrom<Hostile>(
  { kind: "null" },
  { kind: "shortBuffer" },
  { kind: "longString" },
  { kind: "string", value: "abc" },
  { kind: "array" },
  { kind: "undefined" },
);

/** A hostile value for one of `args` of op `name` about one call in twelve; null otherwise. */
function bad(
  enabled: boolean,
  name: string,
  args: readonly string[],
  buffers: readonly string[] = [],
): fc.Arbitrary<Bad | null> {
  if (!enabled || !HOSTILE || (HOSTILE_OPS !== null && !HOSTILE_OPS.has(name))) return fc.constant(null);
  const options: fc.Arbitrary<Bad>[] = [];
  if (args.length > 0) options.push(fc.record({ arg: fc.constantFrom(...args), value: hostile }));
  if (buffers.length > 0) options.push(fc.record({ arg: fc.constantFrom(...buffers), value: hostileBuffer }));
  return fc.oneof(
    { weight: 11, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.oneof(...options) },
  );
}

const seed = fc.nat({ max: 0xffff });

function weighted<T>(weight: number, arbitrary: fc.Arbitrary<T>): fc.WeightedArbitrary<T> {
  return { weight, arbitrary };
}

const DEVICE_COMMANDS: readonly DeviceCommand[] = [
  "read",
  "read",
  "write",
  "write",
  "toDevice",
  "toDevice",
  "toDevice",
  "toSystem",
  "snapshot",
  "flags",
  "release",
  "exclusive",
  "checkExclusive",
];

/** The device commands generated: those HMMSIM_FUZZ_OPS names as "dev:CMD", or all. */
function deviceCommands(allowed: Set<string> | null): DeviceCommand[] {
  const named = DEVICE_COMMANDS.filter(
    (cmd) => allowed?.has(`dev:${cmd}`) || allowed?.has(`group:dev:${cmd}`),
  );
  return named.length > 0 ? named : [...DEVICE_COMMANDS];
}

/** Every sequential op with its weight. */
function opArbitraries(
  allowed: Set<string> | null,
  withHostile: boolean,
): Record<string, fc.WeightedArbitrary<Op>> {
  return {
    mmap: weighted(
      6,
      fc.record({
        op: fc.constant("mmap" as const),
        p: proc,
        kind,
        file: fc.nat({ max: 3 }),
        prot: fc.oneof(weighted(4, fc.constant(PROT_READ | PROT_WRITE)), weighted(1, prot)),
        place: fc.constantFrom("any" as const, "any" as const, "fixed" as const, "noreplace" as const),
        at: where,
        pages: smallPages,
        fileOffset: fc.nat({ max: 12 }),
        bad: bad(withHostile, "mmap", ["length", "addr", "prot", "flags", "offset"]),
      }),
    ),
    mmapDevice: weighted(
      2,
      fc.record({
        op: fc.constant("mmapDevice" as const),
        p: proc,
        fd: fc.nat({ max: 9 }),
        shared: fc.boolean(),
        prot: fc.oneof(weighted(4, fc.constant(PROT_READ | PROT_WRITE)), weighted(1, fc.constant(PROT_READ))),
        place: fc.constantFrom("any" as const, "any" as const, "fixed" as const),
        at: where,
        pages: fc.integer({ min: 1, max: 4 }),
      }),
    ),
    munmap: weighted(
      2,
      fc.record({
        op: fc.constant("munmap" as const),
        p: proc,
        at: where,
        pages: smallPages,
        bad: bad(withHostile, "munmap", ["addr", "length"]),
      }),
    ),
    mprotect: weighted(
      2,
      fc.record({
        op: fc.constant("mprotect" as const),
        p: proc,
        at: where,
        pages: smallPages,
        prot,
        bad: bad(withHostile, "mprotect", ["addr", "length", "prot"]),
      }),
    ),
    mremap: weighted(
      2,
      fc.record({
        op: fc.constant("mremap" as const),
        p: proc,
        at: where,
        oldPages: fc.integer({ min: 1, max: 5 }),
        newPages: fc.integer({ min: 1, max: 6 }),
        sameSize: fc.boolean(),
        acrossVmas: fc.oneof(weighted(4, fc.constant(false)), weighted(1, fc.constant(true))),
        flags: fc.constantFrom(
          0,
          MREMAP_MAYMOVE,
          MREMAP_MAYMOVE,
          MREMAP_MAYMOVE | MREMAP_FIXED,
          MREMAP_MAYMOVE | MREMAP_FIXED,
          MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
          MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
          MREMAP_FIXED,
          MREMAP_DONTUNMAP,
        ),
        to: where,
        bad: bad(withHostile, "mremap", ["oldAddr", "oldLength", "newLength", "flags", "newAddr"]),
      }),
    ),
    madvise: weighted(
      2,
      fc.record({
        op: fc.constant("madvise" as const),
        p: proc,
        at: where,
        pages: smallPages,
        advice: fc.oneof(
          weighted(4, fc.constant(MADV_DONTNEED)),
          weighted(3, fc.constant(MADV_FREE)),
          weighted(1, fc.constant(MADV_DONTNEED_LOCKED)),
          weighted(2, fc.constantFrom(MADV_HUGEPAGE, MADV_NOHUGEPAGE)),
          // Advice Linux knows and hmmsim refuses (EINVAL, documented), one it refuses too (EPERM),
          // and an int whose low 32 bits are MADV_DONTNEED.
          weighted(1, fc.constantFrom(MADV_WILLNEED, MADV_COLD, MADV_HWPOISON, 2 ** 32 + MADV_DONTNEED)),
        ),
        bad: bad(withHostile, "madvise", ["addr", "length", "advice"]),
      }),
    ),
    fork: weighted(3, fc.record({ op: fc.constant("fork" as const), p: proc })),
    exit: weighted(1, fc.record({ op: fc.constant("exit" as const), p: proc })),
    write: weighted(
      5,
      fc.record({
        op: fc.constant("write" as const),
        p: proc,
        at: where,
        length: fc.oneof(
          weighted(12, fc.integer({ min: 1, max: 128 })),
          weighted(ZERO_WEIGHT, fc.constant(0)),
        ),
        seed,
        bad: bad(withHostile, "write", ["addr"], ["data"]),
      }),
    ),
    read: weighted(
      4,
      fc.record({
        op: fc.constant("read" as const),
        p: proc,
        at: where,
        length: fc.oneof(
          weighted(12, fc.integer({ min: 1, max: 128 })),
          weighted(ZERO_WEIGHT, fc.constant(0)),
        ),
        bad: bad(withHostile, "read", ["addr", "length"]),
      }),
    ),
    word: weighted(
      2,
      fc.record({
        op: fc.constant("word" as const),
        p: proc,
        at: where,
        width: fc.constantFrom(32 as const, 64 as const),
        write: fc.boolean(),
        value: fc.oneof(
          weighted(3, fc.nat()),
          weighted(1, fc.constantFrom(-1, -(2 ** 63), 2 ** 53 + 2, 2 ** 63, 2 ** 64 - 2 ** 11)),
        ),
        asNumber: fc.boolean(),
        bad: bad(withHostile, "word", ["addr", "value"]),
      }),
    ),
    fill: weighted(
      5,
      fc.record({
        op: fc.constant("fill" as const),
        p: proc,
        at: where,
        pages: smallPages,
        seed,
        bad: bad(withHostile, "fill", ["addr", "npages"]),
      }),
    ),
    check: weighted(
      2,
      fc.record({
        op: fc.constant("check" as const),
        p: proc,
        at: where,
        pages: smallPages,
        seed,
        bad: bad(withHostile, "check", ["addr", "npages"]),
      }),
    ),
    touch: weighted(
      2,
      fc.record({
        op: fc.constant("touch" as const),
        p: proc,
        at: where,
        pages: smallPages,
        write: fc.boolean(),
        bad: bad(withHostile, "touch", ["addr", "npages"]),
      }),
    ),
    pin: weighted(
      2,
      fc.record({
        op: fc.constant("pin" as const),
        p: proc,
        at: where,
        pages: smallPages,
        write: fc.boolean(),
        longterm: fc.oneof(weighted(2, fc.constant(false)), weighted(1, fc.constant(true))),
        bad: bad(withHostile, "pin", ["addr", "npages"]),
      }),
    ),
    unpin: weighted(
      2,
      fc.record({
        op: fc.constant("unpin" as const),
        pin: fc.nat({ max: 9 }),
        bad: bad(withHostile, "unpin", ["pfns"]),
      }),
    ),
    createFile: weighted(
      1,
      fc.record({
        op: fc.constant("createFile" as const),
        pages: fc.integer({ min: 0, max: 12 }),
        extraBytes: fc.constantFrom(0, 0, 100),
        bad: bad(withHostile, "createFile", ["size"]),
      }),
    ),
    pwrite: weighted(
      1,
      fc.record({
        op: fc.constant("pwrite" as const),
        file: fc.nat({ max: 3 }),
        offset: fc.oneof(
          weighted(3, fc.nat({ max: 16 * 4096 })),
          weighted(1, fc.integer({ min: -300, max: 300 })),
        ),
        fromEnd: fc.boolean(),
        length: fc.integer({ min: 0, max: 200 }),
        seed,
        bad: bad(withHostile, "pwrite", ["offset"], ["data"]),
      }),
    ),
    pread: weighted(
      1,
      fc.record({
        op: fc.constant("pread" as const),
        file: fc.nat({ max: 3 }),
        offset: fc.oneof(
          weighted(3, fc.nat({ max: 16 * 4096 })),
          weighted(1, fc.integer({ min: -300, max: 300 })),
        ),
        fromEnd: fc.boolean(),
        length: fc.integer({ min: 0, max: 200 }),
        bad: bad(withHostile, "pread", ["offset", "length"]),
      }),
    ),
    open: weighted(
      3,
      fc.record({
        op: fc.constant("open" as const),
        // Devices 0 and 1 are device-private; under modern, 2 is device-coherent (runner.ts).
        device: fc.nat({ max: 2 }),
        p: proc,
        exited: fc.oneof(weighted(9, fc.constant(false)), weighted(1, fc.constant(true))),
        bad: bad(withHostile, "open", ["device"]),
      }),
    ),
    close: weighted(2, fc.record({ op: fc.constant("close" as const), fd: fc.nat({ max: 9 }) })),
    dev: weighted(
      14,
      fc.record({
        op: fc.constant("dev" as const),
        fd: fc.nat({ max: 9 }),
        cmd: fc.constantFrom<DeviceCommand>(...deviceCommands(allowed)),
        at: where,
        pages: smallPages,
        seed,
        into: fc.boolean(),
        bad: bad(withHostile, "dev", ["addr", "npages"], ["data"]),
      }),
    ),
    onExited: weighted(
      1,
      fc.record({
        op: fc.constant("onExited" as const),
        p: proc,
        call: fc.constantFrom(
          "mmap" as const,
          "munmap" as const,
          "fork" as const,
          "exit" as const,
          "read" as const,
          "fill" as const,
          "pin" as const,
          "unpin" as const,
        ),
      }),
    ),
    cpuStore: weighted(
      2,
      fc.record({ op: fc.constant("cpuStore" as const), p: proc, at: where, value: fc.nat() }),
    ),
    cpuLoad: weighted(1, fc.record({ op: fc.constant("cpuLoad" as const), p: proc, at: where })),
  };
}

/** One sequential operation, of the kinds `allowed` names (all when null). */
export function opArbitrary(allowed: Set<string> | null, withHostile = true): fc.Arbitrary<Op> {
  const all = opArbitraries(allowed, withHostile);
  const chosen = Object.entries(all)
    .filter(([name]) => allowed === null || allowed.has(name))
    .map(([, arbitrary]) => arbitrary);
  if (chosen.length === 0) throw new Error("HMMSIM_FUZZ_OPS allows no sequential operation");
  return fc.oneof(...chosen);
}

/** One operation of a concurrent group: the device commands, CPU accesses, mm calls and fork. */
function concurrentOpArbitrary(allowed: Set<string> | null): fc.Arbitrary<ConcurrentOp> | null {
  const all = opArbitraries(allowed, false);
  const pick = (name: string, weight: number) =>
    ({ weight, arbitrary: all[name]!.arbitrary }) as fc.WeightedArbitrary<ConcurrentOp>;
  // Hostile arguments are the sequential mode's business: a group's operations are well formed. A
  // READ or WRITE of several pages is not atomic in Linux either (dmirror_read/dmirror_write copy what
  // is mirrored, fault the rest in and copy again, so a fork or a zap can land between two pages): in
  // a group they cover one page, so that the serial-order check stays exact.
  // HMM_DMIRROR_RELEASE is not run in a group: lib/test_hmm.c's dmirror_device_remove_chunks waits in
  // memunmap_pages for every page of a chunk, and a MIGRATE_TO_DEV that took a page of it before the
  // chunk was marked removed maps it after the eviction passed it, so RELEASE then waits for ever (the
  // same in hmmsim, whose scheduler reports the deadlock; see faithful.property.test.ts).
  const wellFormed = (op: ConcurrentOp): ConcurrentOp => {
    const plain = "bad" in op ? { ...op, bad: null } : op;
    if (plain.op !== "dev") return plain;
    if (plain.cmd === "release") return { ...plain, cmd: "toSystem" };
    return plain.cmd === "read" || plain.cmd === "write" ? { ...plain, pages: 1 } : plain;
  };
  const weights: [string, number][] = [
    ["dev", 10],
    ["close", 2],
    ["cpuStore", 3],
    ["cpuLoad", 2],
    ["munmap", 1],
    ["mprotect", 1],
    ["madvise", 1],
    ["fork", 3],
  ];
  const options = weights
    .filter(([name]) => allowed === null || allowed.has(`group:${name}`))
    .map(([name, weight]) => pick(name, weight));
  return options.length === 0 ? null : fc.oneof(...options).map(wellFormed);
}

/**
 * The steps every sequence starts with, so that most calls find memory and a device file: process 0
 * maps 4 to 8 pages (mostly private anonymous, read-write), perhaps fills them, and opens a device.
 */
const prologue: fc.Arbitrary<Op[]> = fc
  .record({
    kind: fc.constantFrom<Kind>("anonPrivate", "anonPrivate", "anonPrivate", "anonShared", "filePrivate"),
    pages: fc.integer({ min: 4, max: 8 }),
    fill: fc.oneof(weighted(3, fc.constant(true)), weighted(1, fc.constant(false))),
    seed,
    device: fc.nat({ max: 2 }),
  })
  .map(({ kind, pages, fill, seed, device }) => {
    const at = { anchor: 0, delta: 0, offset: 0 };
    const ops: Op[] = [
      {
        op: "mmap",
        p: 0,
        kind,
        file: 0,
        prot: PROT_READ | PROT_WRITE,
        place: "any",
        at,
        pages,
        fileOffset: 0,
        bad: null,
      },
    ];
    if (fill) ops.push({ op: "fill", p: 0, at, pages, seed, bad: null });
    ops.push({ op: "open", device, p: 0, exited: false, bad: null });
    return ops;
  });

/**
 * Process 0 forks and exits: its child inherits the device files, which outlive the mm they mirror
 * (the commands on such a file, READ and WRITE's livelock among them, need this pair to be likely).
 */
const handoff: fc.Arbitrary<Step[]> = fc.constant<Step[]>([
  { op: "fork", p: 0 },
  { op: "exit", p: 0 },
]);

/**
 * HMM_DMIRROR_FLAGS armed between a migration to the device and a CPU access of those pages, so that
 * the access's fault back (migrate_to_ram) is the allocation that fails: SIGBUS under 4.14 (the
 * driver convention of that era), a retried fault that succeeds under modern (mm_fault_error).
 */
const failAllocThenAccess: fc.Arbitrary<Step[]> = fc
  .record({ pages: fc.integer({ min: 1, max: 4 }), write: fc.boolean(), fd: fc.nat({ max: 9 }) })
  .map(({ pages, write, fd }): Step[] => {
    const at = { anchor: 0, delta: 0, offset: 0 };
    return [
      { op: "dev", fd, cmd: "toDevice", at, pages, seed: 0, into: false, bad: null },
      { op: "dev", fd, cmd: "flags", at, pages: 1, seed: 0, into: false, bad: null },
      { op: "touch", p: 0, at, pages, write, bad: null },
    ];
  });

/**
 * HMM_DMIRROR_EXCLUSIVE, HMM_DMIRROR_CHECK_EXCLUSIVE (EPERM: the device still maps the pages for
 * atomic access), a CPU access of those pages (which revokes the device's access), CHECK again (0 now):
 * the round trip hmm-tests' exclusive tests make, which random steps would rarely line up.
 */
const exclusiveThenAccess: fc.Arbitrary<Step[]> = fc
  .record({ pages: fc.integer({ min: 1, max: 4 }), write: fc.boolean(), fd: fc.nat({ max: 9 }) })
  .map(({ pages, write, fd }): Step[] => {
    const at = { anchor: 0, delta: 0, offset: 0 };
    const check: Op = { op: "dev", fd, cmd: "checkExclusive", at, pages, seed: 0, into: false, bad: null };
    return [
      { op: "dev", fd, cmd: "exclusive", at, pages, seed: 0, into: write, bad: null },
      check,
      { op: "touch", p: 0, at, pages, write, bad: null },
      check,
    ];
  });

/**
 * A migration through the prologue's descriptor (to the device-coherent device in about a third of the
 * modern runs), then a long-term pin of those pages (which must migrate a coherent page back to RAM
 * first, check_and_migrate_movable_pages) or a short-term one (which pins the device page itself).
 */
const migrateThenPin: fc.Arbitrary<Step[]> = fc
  .record({ pages: fc.integer({ min: 1, max: 4 }), write: fc.boolean(), longterm: fc.boolean() })
  .map(({ pages, write, longterm }): Step[] => {
    const at = { anchor: 0, delta: 0, offset: 0 };
    return [
      { op: "dev", fd: 0, cmd: "toDevice", at, pages, seed: 0, into: false, bad: null },
      { op: "pin", p: 0, at, pages, write, longterm, bad: null },
    ];
  });

/**
 * A sequence of steps after the prologue; with `concurrent`, about one step in four is a group of 2 or
 * 3 threads. `hostile: false` generates no hostile arguments (HMMSIM_FUZZ_HOSTILE=0 does it for all).
 */
export function stepsArbitrary(options: {
  concurrent: boolean;
  allowed: Set<string> | null;
  maxLength: number;
  hostile?: boolean;
  /** Weight of a concurrent group against 18 for a sequential op (default 6: one step in four). */
  groupWeight?: number;
}): fc.Arbitrary<Step[]> {
  const op = opArbitrary(options.allowed, options.hostile ?? true).map((one): Step[] => [one]);
  const member = options.concurrent ? concurrentOpArbitrary(options.allowed) : null;
  const group =
    member === null
      ? null
      : fc
          .record({
            op: fc.constant("concurrent" as const),
            ops: fc.array(member, { minLength: 2, maxLength: 3 }),
            seed: fc.nat(),
          })
          .map((one): Step[] => [one]);
  const processOps = options.allowed === null || (options.allowed.has("fork") && options.allowed.has("exit"));
  const chunks: fc.WeightedArbitrary<Step[]>[] = [weighted(group === null ? 24 : 18, op)];
  if (group !== null) chunks.push(weighted(options.groupWeight ?? 6, group));
  if (processOps) chunks.push(weighted(1, handoff));
  if (options.allowed === null) chunks.push(weighted(1, failAllocThenAccess));
  if (options.allowed === null || options.allowed.has("dev:exclusive"))
    chunks.push(weighted(1, exclusiveThenAccess));
  if (options.allowed === null || options.allowed.has("pin")) chunks.push(weighted(1, migrateThenPin));
  const body = fc.array(fc.oneof(...chunks), { minLength: 1, maxLength: options.maxLength, size: "max" });
  return fc.tuple(prologue, body).map(([first, rest]) => [...first, ...rest.flat()]);
}
