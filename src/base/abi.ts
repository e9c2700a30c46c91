/**
 * How a JavaScript value becomes a system-call argument: one rule for every call of hmmsim's surface
 * (Process, TmpFile, System.createFile) and for the sys* entry points of src/mm.
 *
 * The kernel's system calls receive `unsigned long`, `size_t`, `loff_t` and `int` arguments in 64-bit
 * registers (SYSCALL_DEFINE in include/linux/syscalls.h). hmmsim passes a JavaScript value through
 * that ABI as C would:
 *
 * - A number that is an integer with -2^63 <= n < 2^64 is the register value n mod 2^64, as C converts
 *   a `long` to `unsigned long`. So -4096 is 0xffff_ffff_ffff_f000, above every user address, and the
 *   call answers as the kernel answers that value (munmap(-4096, 8192) is EINVAL: start > TASK_SIZE).
 *   Integers of 2^53 and more are exact in a double, so they pass unchanged.
 * - An `int` argument (madvise's advice) is the low 32 bits of that register, sign-extended, as the
 *   SYSCALL_DEFINE wrappers truncate it; a `loff_t` (the pread and pwrite offsets) reads the 64 bits
 *   as signed, so 2^63 and above are negative offsets.
 * - A value no register can hold (NaN, an infinity, 1.5, a BigInt where a number is expected, a
 *   string, null, undefined, an object, an integer outside that range) is refused with EINVAL before
 *   anything else about the arguments is looked at.
 * - A buffer argument (data to write) that is not a Uint8Array is a bad user pointer: EFAULT, which
 *   is what copy_from_user gives the kernel for one.
 * - A JavaScript-only flag (pinPages' `write`, touch's `write`) that is not a boolean: EINVAL.
 *
 * Values are checked with BigInt: a system call does this once per call, never per page.
 */

export const U64_LIMIT = 1n << 64n;
const S64_MIN = -(2 ** 63);
const U64_END = 2 ** 64;

/** True when some 64-bit register holds this value: an integer number with -2^63 <= n < 2^64. */
export function isRegisterValue(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= S64_MIN && value < U64_END;
}

/** The `unsigned long` (or `size_t`) a register holding `value` passes, or null when none can. */
export function ulongArg(value: unknown): bigint | null {
  if (!isRegisterValue(value)) return null;
  return value >= 0 ? BigInt(value) : BigInt.asUintN(64, BigInt(value));
}

/** The `loff_t` (signed 64 bits) a register holding `value` passes, or null when none can. */
export function loffArg(value: unknown): bigint | null {
  if (!isRegisterValue(value)) return null;
  return BigInt.asIntN(64, BigInt(value));
}

/** The `int` (low 32 bits, signed) a register holding `value` passes, or null when none can. */
export function intArg(value: unknown): number | null {
  // ToInt32 of an integer-valued double is exactly its low 32 bits, two's complement.
  return isRegisterValue(value) ? value | 0 : null;
}

/**
 * A 64-bit value stored through a C integer of `bits` bits (writeU32, writeU64): a register value or,
 * for 64 bits, a BigInt in the same range; null when no register can hold it.
 */
export function storedInteger(value: unknown, bits: 32 | 64): bigint | null {
  let big: bigint;
  if (typeof value === "bigint") {
    if (bits !== 64 || value < -(1n << 63n) || value >= U64_LIMIT) return null;
    big = value;
  } else if (isRegisterValue(value)) {
    big = BigInt(value);
  } else {
    return null;
  }
  return BigInt.asUintN(bits, big);
}

/** A buffer the call may read: a Uint8Array (a Node Buffer is one). Anything else is EFAULT. */
export function isByteBuffer(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

/** The smaller of two register values (Math.min takes no BigInt). */
export function minU64(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
