/**
 * hmm-tests.c's hmm_gup_test: GUP and long-term pins of pages on the device, through the gup_test
 * module. Every kind of GUP brings a device-private page back to RAM (it faults); a device-coherent
 * page stays where it is for a plain reference and is migrated to RAM for a long-term pin.
 */
import { KernelError } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import { HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL, HMM_DMIRROR_PROT_WRITE } from "../drivers/dmirror_uapi.js";
import {
  FOLL_LONGTERM,
  FOLL_WRITE,
  GUP_BASIC_TEST,
  GUP_FAST_BENCHMARK,
  type GupTestFile,
  PIN_FAST_BENCHMARK,
  PIN_LONGTERM_BENCHMARK,
} from "../gup_test.js";
import {
  expectEqual,
  expectInts,
  type HmmTest,
  ints,
  isCoherent,
  setup,
  TestSkipped,
  teardown,
} from "./harness.js";

/** gup_test_exec: one page per call, FOLL_WRITE | flags; the ioctl must succeed. */
function gupTestExec(
  gup: GupTestFile,
  addr: number,
  cmd: number,
  npages: number,
  size: number,
  flags: number,
): void {
  gup.ioctl(cmd, { addr, size, nrPagesPerCall: npages, gupFlags: FOLL_WRITE | flags });
}

export const gupTests: HmmTest[] = [
  {
    // TEST_F(hmm, hmm_gup_test): migrate 4 pages, then GUP_BASIC_TEST, GUP_FAST_BENCHMARK,
    // PIN_FAST_BENCHMARK with FOLL_LONGTERM and PIN_LONGTERM_BENCHMARK on one page each; SNAPSHOT says
    // pages 0 and 1 are still on a coherent device (system pages in the private variant) and pages 2
    // and 3 are system pages; the data is intact. Without the gup_test module (under "4.14", whose
    // kernel had none) the test SKIPs with the kernel's reason.
    name: "hmm_gup_test",
    run(context) {
      const f = setup(context);
      let gup: GupTestFile;
      try {
        gup = f.system.openGupTest(f.proc);
      } catch (error) {
        if (!(error instanceof KernelError)) throw error;
        teardown(f);
        throw new TestSkipped("Skipping test, could not find gup_test driver");
      }
      const npages = 4;
      const size = npages * PAGE_SIZE;
      const ptr = f.proc.mmap(size);
      f.proc.write(
        ptr,
        ints(size / 4, (i) => i),
      );
      const mirror = new Uint8Array(size);
      const ret = f.fd.migrateToDevice(ptr, npages, mirror);
      expectEqual(ret.cpages, npages, "cpages");
      expectInts(mirror, (i) => i, "mirror");
      gupTestExec(gup, ptr, GUP_BASIC_TEST, 1, PAGE_SIZE, 0);
      gupTestExec(gup, ptr + PAGE_SIZE, GUP_FAST_BENCHMARK, 1, PAGE_SIZE, 0);
      gupTestExec(gup, ptr + 2 * PAGE_SIZE, PIN_FAST_BENCHMARK, 1, PAGE_SIZE, FOLL_LONGTERM);
      gupTestExec(gup, ptr + 3 * PAGE_SIZE, PIN_LONGTERM_BENCHMARK, 1, PAGE_SIZE, 0);
      const m = f.fd.snapshot(ptr, npages);
      const onDevice = isCoherent(context)
        ? HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE
        : HMM_DMIRROR_PROT_WRITE;
      expectEqual(m[0], onDevice, "m[0]");
      expectEqual(m[1], onDevice, "m[1]");
      expectEqual(m[2], HMM_DMIRROR_PROT_WRITE, "m[2]");
      expectEqual(m[3], HMM_DMIRROR_PROT_WRITE, "m[3]");
      // Check again the content on the pages. Make sure there's no corrupted data.
      expectInts(f.proc.read(ptr, size), (i) => i, "ptr");
      f.proc.munmap(ptr, size);
      teardown(f);
    },
  },
];
