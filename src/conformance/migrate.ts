/**
 * hmm-tests.c from migrate to anon_teardown: migration to device memory and back, over the kinds of
 * memory a range can hold, and a READ racing munmap.
 */
import { EINVAL, ENOENT } from "../base/errno.js";
import { Rng } from "../base/rng.js";
import { PAGE_SIZE } from "../base/units.js";
import type { DmirrorResult } from "../drivers/dmirror.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  sysMunmap,
} from "../mm/mmap.js";
import { firstRunnable } from "../sched/scheduler.js";
import type { Kfn } from "../sched/thread.js";
import {
  expectConsistent,
  expectEqual,
  expectErrno,
  expectInts,
  firstMinor,
  type HmmTest,
  ints,
  isCoherent,
  NINTS,
  NPAGES,
  NTIMES,
  SIZE,
  setup,
  setup2,
  teardown,
  teardown2,
} from "./harness.js";

export const migrateTests: HmmTest[] = [
  {
    // TEST_F(hmm, migrate): migrate anonymous memory to device memory.
    name: "migrate",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      // Check what the device read.
      expectInts(mirror, (i) => i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_file_private) (be3f38d05cc5, May 2026): the written pages of a MAP_PRIVATE
    // file mapping are anonymous (folio_test_anon), so they migrate although the VMA is not anonymous
    // (vma_is_anonymous); hmm_buffer_free's munmap then zaps device entries in a file VMA, where the
    // kernel before that commit WARNed in zap_nonpresent_ptes. hmmsim's zap has no such WARN.
    name: "migrate_file_private",
    run(context) {
      const f = setup(context);
      const file = f.system.createFile("hmm-migrate_file_private", SIZE);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE, file });
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectInts(mirror, (i) => i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_fault): migrate, read the first half back with the CPU (faulting it back to
    // RAM in the private variant; reading device memory in place in the coherent one), migrate again:
    // cpages is npages again.
    name: "migrate_fault",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      let ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectInts(mirror, (i) => i, "mirror");
      expectInts(f.proc.read(ptr, SIZE / 2), (i) => i, "ptr (first half)");
      ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages (again)");
      expectInts(mirror, (i) => i, "mirror (again)");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_release): migrate, release the device's memory (HMM_DMIRROR_RELEASE:
    // dmirror_device_remove_chunks evicts every chunk), then read half the pages back and check them.
    //
    // Under "4.14" the command does not exist: test_hmm.c gained it together with migrate_device_range
    // (6.1), which eviction needs, so the ioctl answers -EINVAL, its default, the pages stay on the
    // device and the CPU reads fault them back through migrate_to_ram; the port checks that instead of
    // ASSERT_EQ(ret, 0).
    name: "migrate_release",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectInts(mirror, (i) => i, "mirror");
      if (context.protocol === "modern") {
        f.fd.release(ptr, NPAGES);
        expectEqual(f.system.device(firstMinor(context)).usedPages, 0, "device pages after RELEASE");
      } else {
        expectErrno(() => f.fd.release(ptr, NPAGES), EINVAL, "RELEASE under 4.14");
      }
      expectInts(f.proc.read(ptr, SIZE / 2), (i) => i, "ptr (first half)");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_shared): shared anonymous memory does not migrate (migrate_vma_pages refuses
    // a page with a mapping), so the read-back finds a page the device does not mirror: -ENOENT.
    name: "migrate_shared",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE, { flags: MAP_SHARED | MAP_ANONYMOUS });
      expectErrno(() => f.fd.migrateToDevice(ptr, NPAGES, new Uint8Array(SIZE)), ENOENT, "MIGRATE_TO_DEV");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm2, migrate_mixed): a PROT_NONE range (-EINVAL), one with a hole (-EINVAL), then pages
    // 2 to 5 (a zero page, a read-only page, two writable pages) to the second device, and page 5,
    // now on the second device, to the first: -ENOENT.
    name: "migrate_mixed",
    run(context) {
      const f = setup2(context);
      const npages = 6;
      const size = npages * PAGE_SIZE;
      const p = f.proc.mmap(size, { prot: PROT_NONE, flags: MAP_PRIVATE | MAP_ANONYMOUS });
      const mirror = new Uint8Array(size);
      expectErrno(() => f.fd1.migrateToDevice(p, npages, mirror), EINVAL, "MIGRATE_TO_DEV of PROT_NONE");
      f.proc.munmap(p + PAGE_SIZE, PAGE_SIZE);
      expectErrno(() => f.fd1.migrateToDevice(p, 3, mirror), EINVAL, "MIGRATE_TO_DEV over a hole");
      // Page 2 will be a read-only zero page.
      f.proc.mprotect(p + 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ);
      const val = f.proc.readU32(p + 2 * PAGE_SIZE) + 3;
      expectEqual(val, 3, "val");
      // Page 3 will be read-only.
      f.proc.mprotect(p + 3 * PAGE_SIZE, PAGE_SIZE, PROT_READ | PROT_WRITE);
      f.proc.write(
        p + 3 * PAGE_SIZE,
        ints(1, () => val),
      );
      f.proc.mprotect(p + 3 * PAGE_SIZE, PAGE_SIZE, PROT_READ);
      // Pages 4 and 5 will be read-write.
      f.proc.mprotect(p + 4 * PAGE_SIZE, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE);
      f.proc.write(
        p + 4 * PAGE_SIZE,
        ints(1, () => val),
      );
      f.proc.write(
        p + 5 * PAGE_SIZE,
        ints(1, () => val),
      );
      // Now try to migrate pages 2-5 to device 1.
      const ret = f.fd1.migrateToDevice(p + 2 * PAGE_SIZE, 4, mirror);
      expectEqual(ret.cpages, 4, "cpages");
      // Page 5 won't be migrated to device 0 because it's on device 1.
      expectErrno(() => f.fd0.migrateToDevice(p + 5 * PAGE_SIZE, 1, mirror), ENOENT, "page 5 to device 0");
      f.proc.munmap(p, size);
      teardown2(f);
    },
  },
  {
    // TEST_F(hmm, migrate_multiple): NTIMES times, a fresh buffer is migrated and read back by the CPU.
    // The coherent variant first migrates it back explicitly (MIGRATE_TO_SYS, cpages = npages), since
    // the CPU reads device-coherent memory without a fault; the private one faults every page back.
    name: "migrate_multiple",
    run(context) {
      const f = setup(context);
      for (let c = 0; c < NTIMES; c++) {
        const ptr = f.proc.mmap(SIZE);
        f.proc.write(
          ptr,
          ints(NINTS, (i) => i),
        );
        const mirror = new Uint8Array(SIZE);
        const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
        expectEqual(ret.cpages, NPAGES, `cpages (pass ${c})`);
        expectInts(mirror, (i) => i, `mirror (pass ${c})`);
        if (isCoherent(context)) {
          const back = f.fd.migrateToSystem(ptr, NPAGES);
          expectEqual(back.cpages, NPAGES, `MIGRATE_TO_SYS cpages (pass ${c})`);
        }
        expectInts(f.proc.read(ptr, SIZE), (i) => i, `ptr (pass ${c})`);
        f.proc.munmap(ptr, SIZE);
      }
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_read_multiple): NTIMES times, a fresh buffer with ptr[i] = i + c is read.
    name: "anon_read_multiple",
    run(context) {
      const f = setup(context);
      for (let c = 0; c < NTIMES; c++) {
        const ptr = f.proc.mmap(SIZE);
        f.proc.write(
          ptr,
          ints(NINTS, (i) => i + c),
        );
        const mirror = new Uint8Array(SIZE);
        const ret = f.fd.read(ptr, NPAGES, mirror);
        expectEqual(ret.cpages, NPAGES, `cpages (pass ${c})`);
        expectEqual(ret.faults, 1, `faults (pass ${c})`);
        expectInts(mirror, (i) => i + c, `mirror (pass ${c})`);
        f.proc.munmap(ptr, SIZE);
      }
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_teardown): NTIMES times, a READ of the buffer while another thread unmaps its
    // second half after a random delay. When the READ succeeds it must have read the data.
    //
    // Difference: the C test's delay (hmm_nanosleep of a random number of nanoseconds) becomes a
    // schedule: each pass runs the two threads under a chooser that picks the next to step from an Rng
    // seeded with the pass number, so every pass interleaves them differently and replays exactly.
    // The READ's result is taken as the ioctl's (0 or -errno) before DeviceFile would copy it out.
    name: "anon_teardown",
    run(context) {
      const f = setup(context);
      const k = f.system.kernel;
      for (let c = 0; c < NTIMES; c++) {
        const ptr = f.proc.mmap(SIZE);
        f.proc.write(
          ptr,
          ints(NINTS, (i) => i + c),
        );
        const rng = new Rng(c + 1);
        const bounce = new Uint8Array(SIZE);
        const words = new Uint32Array(NPAGES);
        const mm = f.proc.mm;
        const reader = k.sched.spawn(
          "anon_teardown: HMM_DMIRROR_READ",
          f.fd.mirror.cmdRead(ptr / PAGE_SIZE, NPAGES, bounce, words),
        );
        const unmapper = k.sched.spawn(
          "anon_teardown: unmap_buffer",
          (function* (): Kfn<number> {
            return yield* sysMunmap(k, mm, ptr + SIZE / 2, SIZE / 2);
          })(),
        );
        k.sched.setChooser((runnable) => rng.below(runnable.length));
        try {
          k.sched.runAll();
        } finally {
          k.sched.setChooser(firstRunnable);
        }
        for (const thread of [reader, unmapper]) if (thread.state === "failed") throw thread.error;
        expectEqual(unmapper.result, 0, `munmap (pass ${c})`);
        const result = reader.result as DmirrorResult | number;
        if (typeof result !== "number") {
          expectEqual(result.cpages, NPAGES, `cpages (pass ${c})`);
          expectEqual(result.faults, 1, `faults (pass ${c})`);
          expectInts(bounce, (i) => i + c, `mirror (pass ${c})`);
        }
        f.proc.munmap(ptr, SIZE);
        expectConsistent(f.system);
      }
      teardown(f);
    },
  },
];
