/**
 * The errno of the KernelError a call throws (the C tests' -errno), for tests of every kind: it imports
 * nothing from vitest, so the conformance ports (also run by `hmmsim conformance`) can use it. Any other
 * exception passes through; a call that succeeds is an error.
 */
import { KernelError } from "../base/errno.js";

export function errnoOf(body: () => unknown): number {
  try {
    body();
  } catch (error) {
    if (error instanceof KernelError) return error.errno;
    throw error;
  }
  throw new Error("the call succeeded, expected it to fail with an errno");
}
