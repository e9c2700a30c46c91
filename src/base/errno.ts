/** Linux errno values (include/uapi/asm-generic/errno-base.h and errno.h), positive as in the headers. */
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOTTY = 25;
export const EFBIG = 27;
export const ENOSPC = 28;
export const EOVERFLOW = 75;
export const EOPNOTSUPP = 95;

const errnoNames: Readonly<Record<number, string>> = {
  [EPERM]: "EPERM",
  [ENOENT]: "ENOENT",
  [ESRCH]: "ESRCH",
  [EINTR]: "EINTR",
  [EIO]: "EIO",
  [EBADF]: "EBADF",
  [EAGAIN]: "EAGAIN",
  [ENOMEM]: "ENOMEM",
  [EACCES]: "EACCES",
  [EFAULT]: "EFAULT",
  [EBUSY]: "EBUSY",
  [EEXIST]: "EEXIST",
  [ENODEV]: "ENODEV",
  [EINVAL]: "EINVAL",
  [ENOTTY]: "ENOTTY",
  [EFBIG]: "EFBIG",
  [ENOSPC]: "ENOSPC",
  [EOVERFLOW]: "EOVERFLOW",
  [EOPNOTSUPP]: "EOPNOTSUPP",
};

/** "EINVAL" for 22 or -22; "errno 99" for a value without a name here. */
export function errnoName(errno: number): string {
  const positive = Math.abs(errno);
  return errnoNames[positive] ?? `errno ${positive}`;
}

/**
 * A system call or device command failed the way the kernel would fail it. `errno` is positive, as
 * userspace sees it; kernel-internal functions in src/mm return `-errno` instead, as the kernel does.
 */
export class KernelError extends Error {
  override readonly name: string = "KernelError";
  readonly errno: number;
  readonly code: string;

  constructor(errno: number, what: string) {
    const positive = Math.abs(errno);
    super(`${what}: ${errnoName(positive)}`);
    this.errno = positive;
    this.code = errnoName(positive);
  }
}

/** Throws a KernelError when a kernel-style return value is negative; passes the value through otherwise. */
export function checkReturn(ret: number, what: string): number {
  if (ret < 0) throw new KernelError(-ret, what);
  return ret;
}
