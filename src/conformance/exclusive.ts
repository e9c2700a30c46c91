/**
 * hmm-tests.c's exclusive, exclusive_mprotect and exclusive_cow: device-exclusive access
 * (HMM_DMIRROR_EXCLUSIVE, make_device_exclusive), revoked by CPU access, by mprotect and across fork.
 * Device-exclusive entries came with Linux 5.14, so these run under "modern" only.
 */
import { EPERM } from "../base/errno.js";
import { PROT_READ } from "../mm/mmap.js";
import type { Process } from "../process.js";
import {
  asInts,
  expectEqual,
  expectErrno,
  expectInts,
  type HmmTest,
  ints,
  NINTS,
  NPAGES,
  SIZE,
  setup,
  teardown,
} from "./harness.js";

const SINCE_5_14 = {
  protocol: "modern",
  why: "device-exclusive access (make_device_exclusive) came with 5.14",
} as const;

/**
 * The loops `ASSERT_EQ(ptr[i]++, i)` then `ASSERT_EQ(ptr[i], i + 1)`: the first CPU access to each page
 * revokes the device's exclusive access (remove_device_exclusive_entry); the increments must stick.
 */
function faultBackAndIncrement(proc: Process, ptr: number, who: string): void {
  const now = proc.read(ptr, SIZE);
  expectInts(now, (i) => i, `${who} ptr before ++`);
  const view = asInts(now);
  proc.write(
    ptr,
    ints(NINTS, (i) => view[i]! + 1),
  );
  expectInts(proc.read(ptr, SIZE), (i) => i + 1, `${who} ptr after ++`);
}

export const exclusiveTests: HmmTest[] = [
  {
    // TEST_F(hmm, exclusive): map the buffer for exclusive device access, read back what the device
    // sees, then let the CPU read and increment every int (each page's first access revokes the
    // device's access) and check that CHECK_EXCLUSIVE finds no atomic mapping left.
    name: "exclusive",
    minimum: SINCE_5_14,
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.exclusive(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectInts(mirror, (i) => i, "mirror");
      faultBackAndIncrement(f.proc, ptr, "CPU");
      // Check atomic access revoked.
      f.fd.checkExclusive(ptr, NPAGES);
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, exclusive_mprotect): after EXCLUSIVE, mprotect(PROT_READ) (which invalidates the
    // device's mapping), a device WRITE fails with EPERM.
    name: "exclusive_mprotect",
    minimum: SINCE_5_14,
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.exclusive(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectInts(mirror, (i) => i, "mirror");
      f.proc.mprotect(ptr, SIZE, PROT_READ);
      expectErrno(() => f.fd.write(ptr, NPAGES, mirror), EPERM, "WRITE");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, exclusive_cow): EXCLUSIVE, then fork(); parent and child each read and increment
    // every int. Fork makes the device-exclusive entries ordinary PTEs again (copy_nonpresent_pte's
    // try_restore_exclusive_pte) before sharing them copy-on-write, so each process sees its own
    // increments.
    //
    // Difference: the C child runs on through the same code after fork(); here it runs first, to its
    // exit, then the parent.
    name: "exclusive_cow",
    minimum: SINCE_5_14,
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const ret = f.fd.exclusive(ptr, NPAGES, new Uint8Array(SIZE));
      expectEqual(ret.cpages, NPAGES, "cpages");
      const child = f.proc.fork();
      faultBackAndIncrement(child, ptr, "child");
      child.munmap(ptr, SIZE);
      child.exit();
      faultBackAndIncrement(f.proc, ptr, "parent");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
];
