/** Linux errno values (include/uapi/asm-generic/errno-base.h and errno.h), positive as in the headers. */
export const EPERM = 1;
/** ENOENT (2): no such file or directory. */
export const ENOENT = 2;
/** ESRCH (3): no such process. */
export const ESRCH = 3;
/** EINTR (4): interrupted system call. */
export const EINTR = 4;
/** EIO (5): I/O error. */
export const EIO = 5;
/** EBADF (9): bad file descriptor. */
export const EBADF = 9;
/** EAGAIN (11): try again (also EWOULDBLOCK). */
export const EAGAIN = 11;
/** ENOMEM (12): out of memory. */
export const ENOMEM = 12;
/** EACCES (13): permission denied. */
export const EACCES = 13;
/** EFAULT (14): bad address. */
export const EFAULT = 14;
/** EBUSY (16): device or resource busy. */
export const EBUSY = 16;
/** EEXIST (17): file exists. */
export const EEXIST = 17;
/** ENODEV (19): no such device. */
export const ENODEV = 19;
/** EINVAL (22): invalid argument. */
export const EINVAL = 22;
/** ENOTTY (25): inappropriate ioctl for device. */
export const ENOTTY = 25;
/** EFBIG (27): file too large. */
export const EFBIG = 27;
/** ENOSPC (28): no space left on device. */
export const ENOSPC = 28;
/** EOVERFLOW (75): value too large for defined data type. */
export const EOVERFLOW = 75;
/** EOPNOTSUPP (95): operation not supported. */
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
