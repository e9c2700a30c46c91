import { describe, expect, it } from "vitest";
import {
  checkReturn,
  EACCES,
  EAGAIN,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  ENOMEM,
  EPERM,
  errnoName,
  KernelError,
} from "../../src/base/errno.js";

describe("errno values", () => {
  it("match the Linux headers", () => {
    expect([EPERM, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST, EINVAL]).toEqual([
      1, 11, 12, 13, 14, 16, 17, 22,
    ]);
  });

  it("have names, whatever the sign", () => {
    expect(errnoName(EINVAL)).toBe("EINVAL");
    expect(errnoName(-EINVAL)).toBe("EINVAL");
    expect(errnoName(-ENOMEM)).toBe("ENOMEM");
    expect(errnoName(99)).toBe("errno 99");
    expect(errnoName(-99)).toBe("errno 99");
  });
});

describe("KernelError", () => {
  it("carries a positive errno and its name, from either sign", () => {
    const fromNegative = new KernelError(-ENOMEM, "mmap");
    expect(fromNegative.errno).toBe(ENOMEM);
    expect(fromNegative.code).toBe("ENOMEM");
    expect(fromNegative.message).toBe("mmap: ENOMEM");
    expect(fromNegative.name).toBe("KernelError");
    expect(fromNegative).toBeInstanceOf(Error);
    const fromPositive = new KernelError(EFAULT, "mremap");
    expect(fromPositive.errno).toBe(EFAULT);
    expect(fromPositive.message).toBe("mremap: EFAULT");
  });
});

describe("checkReturn", () => {
  it("passes non-negative values through", () => {
    expect(checkReturn(0, "munmap")).toBe(0);
    expect(checkReturn(0x7f0000000000, "mmap")).toBe(0x7f0000000000);
  });

  it("turns -errno into a KernelError naming the call", () => {
    let caught: unknown;
    try {
      checkReturn(-EEXIST, "mmap");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(KernelError);
    expect(caught).toMatchObject({ errno: EEXIST, code: "EEXIST", message: "mmap: EEXIST" });
  });
});
