/**
 * Always-on assertions. Details are computed lazily so that an assert in a hot path costs one branch
 * (the TypeScript compiler's debug.ts does the same).
 */

/** Thrown when the model breaks one of its own rules: a bug in hmmsim or in a driver using it. */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Builds the extra text of a failed assertion; called only when the check fails, so it may be costly. */
export type Details = () => string;

/** Throws an AssertionError (a bug in hmmsim or a driver, not an errno) when `condition` is false. */
export function assert(condition: unknown, message: string, details?: Details): asserts condition {
  if (!condition) fail(message, details);
}

/** Throws an AssertionError unconditionally: a state the model should never reach. */
export function fail(message: string, details?: Details): never {
  throw new AssertionError(details === undefined ? message : `${message}: ${details()}`);
}

/**
 * assert() for hot paths: the details are `describe(subject)`, computed only when the check fails.
 * Passing a module-level `describe` and its subject allocates nothing, where a closure over the
 * subject would be allocated (with a context for what it captures) on every call.
 */
export function assertAbout<T>(
  condition: unknown,
  message: string,
  describe: (subject: T) => string,
  subject: T,
): asserts condition {
  if (!condition) failAbout(message, describe, subject);
}

function failAbout<T>(message: string, describe: (subject: T) => string, subject: T): never {
  fail(message, () => describe(subject));
}

/** For exhaustive switches: the compiler proves the value impossible, the runtime checks it. */
export function assertNever(value: never, what: string): never {
  throw new AssertionError(`unexpected ${what}: ${String(value)}`);
}

/** A non-negative safe integer, the shape of every page number and count in the model. */
export function assertIndex(value: number, what: string): void {
  if (!(Number.isSafeInteger(value) && value >= 0))
    fail(`${what} must be a non-negative integer`, () => String(value));
}
