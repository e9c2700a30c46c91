/**
 * The gup_test file (/sys/kernel/debug/gup_test, mm/gup_test.c) for the friendly surface: open it for
 * a process with System.openGupTest and issue its ioctls. The kernel side is drivers/gup_test.ts.
 */
import { EFAULT, EINVAL, ESRCH, KernelError } from "./base/errno.js";
import { TASK_SIZE } from "./base/units.js";
import {
  GUP_BASIC_TEST,
  GUP_FAST_BENCHMARK,
  type GupTestArgs,
  gupTestIoctl,
  PIN_BASIC_TEST,
  PIN_FAST_BENCHMARK,
  PIN_LONGTERM_BENCHMARK,
} from "./drivers/gup_test.js";
import type { Process } from "./process.js";
import type { System } from "./system.js";

export {
  GUP_BASIC_TEST,
  GUP_FAST_BENCHMARK,
  type GupTestArgs,
  PIN_BASIC_TEST,
  PIN_FAST_BENCHMARK,
  PIN_LONGTERM_BENCHMARK,
} from "./drivers/gup_test.js";
export { FOLL_LONGTERM, FOLL_WRITE } from "./mm/gup.js";

/** The commands gup_test_ioctl takes (DUMP_USER_PAGES_TEST and the PIN_LONGTERM_TEST_* ones are not modelled). */
const GUP_TEST_COMMANDS: readonly unknown[] = [
  GUP_FAST_BENCHMARK,
  PIN_FAST_BENCHMARK,
  PIN_LONGTERM_BENCHMARK,
  GUP_BASIC_TEST,
  PIN_BASIC_TEST,
];

/** A field of struct gup_test: a non-negative integer a u64 holds and a user address can reach. */
function field(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 || value > TASK_SIZE)
    throw new KernelError(EINVAL, `gup_test: ${what} must be an integer from 0 to TASK_SIZE`);
  return value;
}

/** An open /sys/kernel/debug/gup_test for one process (System.openGupTest): its ioctls act on that process's memory. */
export class GupTestFile {
  constructor(
    readonly system: System,
    readonly process: Process,
  ) {}

  /**
   * ioctl(fd, cmd, &gup): takes and releases references or pins on [addr, addr + size) of the process,
   * nrPagesPerCall pages per call, and returns the bytes of the pages taken (gup.size on return). In
   * the kernel's order: EINVAL for an unknown command, EFAULT when `args` is not an object
   * (copy_from_user), then EINVAL for a size of 0 or not page-aligned, nrPagesPerCall 0, or a field
   * no struct gup_test holds (hmmsim takes values up to TASK_SIZE). ESRCH once the process has exited.
   * A call that takes fewer pages than it asked for ends the loop, without failing the ioctl.
   */
  ioctl(cmd: number, args: GupTestArgs): { size: number } {
    if (this.process.exited) throw new KernelError(ESRCH, "gup_test: the process has exited");
    if (!GUP_TEST_COMMANDS.includes(cmd))
      throw new KernelError(EINVAL, `gup_test: unknown command ${String(cmd)}`);
    if (typeof args !== "object" || args === null) throw new KernelError(EFAULT, "gup_test: struct gup_test");
    const checked: GupTestArgs = {
      addr: field(args.addr, "addr"),
      size: field(args.size, "size"),
      nrPagesPerCall: field(args.nrPagesPerCall, "nr_pages_per_call"),
      gupFlags: field(args.gupFlags, "gup_flags"),
    };
    const system = this.system;
    const ret = system.kernel.sched.call(
      `gup_test ioctl ${cmd} (pid ${this.process.pid})`,
      gupTestIoctl(system.migrateContext, system.gup, this.process.mm, cmd, checked),
      this.process.cpu,
    );
    if (ret < 0) throw new KernelError(-ret, `gup_test ioctl ${cmd}`);
    return { size: ret };
  }
}
