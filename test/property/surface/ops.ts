/**
 * The operations the surface property test generates, and the fast-check generators for them.
 *
 * An address is relative to what is mapped (Where): a mapped page chosen by `anchor`, moved by `delta`
 * pages, so that most calls land on mappings and some beside or past them. Ranges are 1 to 4 pages
 * mostly (the windows of issue 8 need no more), sometimes 0 or up to 8. A `bad` argument replaces one
 * argument of a call with a hostile value (negative, unaligned, NaN, fractional, huge, a string, null,
 * a BigInt, a short buffer...); the reference predicts the kernel's errno where C has the same value,
 * and "a KernelError, nothing changed" where it does not.
 *
 * HMMSIM_FUZZ_OPS (a comma list of op names, e.g. "mm,cpu,device,fork") restricts what is generated,
 * to chase one kind of defect; the groups are in OP_GROUPS, "dev:toDevice" names one device command
 * and "group:NAME" allows NAME only in concurrent groups. HMMSIM_FUZZ_HOSTILE=0 generates no hostile
 * arguments.
 */
import fc from "fast-check";
import {
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

export type DeviceCommand = "read" | "write" | "toDevice" | "toSystem" | "snapshot" | "flags";

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
  | { op: "munmap"; p: number; at: Where; pages: number; bad: Bad | null }
  | { op: "mprotect"; p: number; at: Where; pages: number; prot: number; bad: Bad | null }
  | {
      op: "mremap";
      p: number;
      at: Where;
      oldPages: number;
      newPages: number;
      flags: number;
      to: Where;
      bad: Bad | null;
    }
  | { op: "madvise"; p: number; at: Where; pages: number; bad: Bad | null }
  | { op: "fork"; p: number }
  | { op: "exit"; p: number }
  | { op: "write"; p: number; at: Where; length: number; seed: number; bad: Bad | null }
  | { op: "read"; p: number; at: Where; length: number; bad: Bad | null }
  | { op: "word"; p: number; at: Where; width: 32 | 64; write: boolean; value: number; bad: Bad | null }
  | { op: "fill"; p: number; at: Where; pages: number; seed: number; bad: Bad | null }
  | { op: "check"; p: number; at: Where; pages: number; seed: number; bad: Bad | null }
  | { op: "touch"; p: number; at: Where; pages: number; write: boolean; bad: Bad | null }
  | { op: "pin"; p: number; at: Where; pages: number; write: boolean; bad: Bad | null }
  | { op: "unpin"; pin: number; bad: Bad | null }
  | { op: "createFile"; pages: number; extraBytes: number; bad: Bad | null }
  | { op: "pwrite"; file: number; offset: number; length: number; seed: number; bad: Bad | null }
  | { op: "pread"; file: number; offset: number; length: number; bad: Bad | null }
  | { op: "open"; device: number; p: number; exited: boolean; bad: Bad | null }
  | { op: "close"; fd: number }
  | { op: "dev"; fd: number; cmd: DeviceCommand; at: Where; pages: number; seed: number; bad: Bad | null }
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
  device: ["open", "close", "dev"],
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
  name: string,
  args: readonly string[],
  buffers: readonly string[] = [],
): fc.Arbitrary<Bad | null> {
  if (!HOSTILE || (HOSTILE_OPS !== null && !HOSTILE_OPS.has(name))) return fc.constant(null);
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
];

/** The device commands generated: those HMMSIM_FUZZ_OPS names as "dev:CMD", or all. */
function deviceCommands(allowed: Set<string> | null): DeviceCommand[] {
  const named = DEVICE_COMMANDS.filter(
    (cmd) => allowed?.has(`dev:${cmd}`) || allowed?.has(`group:dev:${cmd}`),
  );
  return named.length > 0 ? named : [...DEVICE_COMMANDS];
}

/** Every sequential op with its weight. */
function opArbitraries(allowed: Set<string> | null): Record<string, fc.WeightedArbitrary<Op>> {
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
        bad: bad("mmap", ["length", "addr", "prot", "flags", "offset"]),
      }),
    ),
    munmap: weighted(
      2,
      fc.record({
        op: fc.constant("munmap" as const),
        p: proc,
        at: where,
        pages: smallPages,
        bad: bad("munmap", ["addr", "length"]),
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
        bad: bad("mprotect", ["addr", "length", "prot"]),
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
        flags: fc.constantFrom(0, MREMAP_MAYMOVE, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED),
        to: where,
        bad: bad("mremap", ["oldAddr", "oldLength", "newLength", "flags", "newAddr"]),
      }),
    ),
    madvise: weighted(
      2,
      fc.record({
        op: fc.constant("madvise" as const),
        p: proc,
        at: where,
        pages: smallPages,
        bad: bad("madvise", ["addr", "length", "advice"]),
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
        bad: bad("write", ["addr"], ["data"]),
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
        bad: bad("read", ["addr", "length"]),
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
        value: fc.nat(),
        bad: bad("word", ["addr", "value"]),
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
        bad: bad("fill", ["addr", "npages"]),
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
        bad: bad("check", ["addr", "npages"]),
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
        bad: bad("touch", ["addr", "npages"]),
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
        bad: bad("pin", ["addr", "npages"]),
      }),
    ),
    unpin: weighted(
      2,
      fc.record({ op: fc.constant("unpin" as const), pin: fc.nat({ max: 9 }), bad: bad("unpin", ["pfns"]) }),
    ),
    createFile: weighted(
      1,
      fc.record({
        op: fc.constant("createFile" as const),
        pages: fc.integer({ min: 0, max: 12 }),
        extraBytes: fc.constantFrom(0, 0, 100),
        bad: bad("createFile", ["size"]),
      }),
    ),
    pwrite: weighted(
      1,
      fc.record({
        op: fc.constant("pwrite" as const),
        file: fc.nat({ max: 3 }),
        offset: fc.nat({ max: 16 * 4096 }),
        length: fc.integer({ min: 0, max: 200 }),
        seed,
        bad: bad("pwrite", ["offset"], ["data"]),
      }),
    ),
    pread: weighted(
      1,
      fc.record({
        op: fc.constant("pread" as const),
        file: fc.nat({ max: 3 }),
        offset: fc.nat({ max: 16 * 4096 }),
        length: fc.integer({ min: 0, max: 200 }),
        bad: bad("pread", ["offset", "length"]),
      }),
    ),
    open: weighted(
      3,
      fc.record({
        op: fc.constant("open" as const),
        device: fc.nat({ max: 1 }),
        p: proc,
        exited: fc.oneof(weighted(9, fc.constant(false)), weighted(1, fc.constant(true))),
        bad: bad("open", ["device"]),
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
        bad: bad("dev", ["addr", "npages"], ["data"]),
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
export function opArbitrary(allowed: Set<string> | null): fc.Arbitrary<Op> {
  const all = opArbitraries(allowed);
  const chosen = Object.entries(all)
    .filter(([name]) => allowed === null || allowed.has(name))
    .map(([, arbitrary]) => arbitrary);
  if (chosen.length === 0) throw new Error("HMMSIM_FUZZ_OPS allows no sequential operation");
  return fc.oneof(...chosen);
}

/** One operation of a concurrent group: the device commands, CPU accesses, mm calls and fork. */
function concurrentOpArbitrary(allowed: Set<string> | null): fc.Arbitrary<ConcurrentOp> | null {
  const all = opArbitraries(allowed);
  const pick = (name: string, weight: number) =>
    ({ weight, arbitrary: all[name]!.arbitrary }) as fc.WeightedArbitrary<ConcurrentOp>;
  // Hostile arguments are the sequential mode's business: a group's operations are well formed.
  const wellFormed = (op: ConcurrentOp): ConcurrentOp => ("bad" in op ? { ...op, bad: null } : op);
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

/** A sequence of steps; with `concurrent`, about one step in four is a group of 2 or 3 threads. */
export function stepsArbitrary(options: {
  concurrent: boolean;
  allowed: Set<string> | null;
  maxLength: number;
}): fc.Arbitrary<Step[]> {
  const op = opArbitrary(options.allowed);
  const member = options.concurrent ? concurrentOpArbitrary(options.allowed) : null;
  if (member === null) return fc.array(op, { minLength: 1, maxLength: options.maxLength, size: "max" });
  const group = fc.record({
    op: fc.constant("concurrent" as const),
    ops: fc.array(member, { minLength: 2, maxLength: 3 }),
    seed: fc.nat(),
  });
  return fc.array(fc.oneof(weighted(3, op as fc.Arbitrary<Step>), weighted(1, group as fc.Arbitrary<Step>)), {
    minLength: 1,
    maxLength: options.maxLength,
    size: "max",
  });
}
