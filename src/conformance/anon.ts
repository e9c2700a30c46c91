/**
 * hmm-tests.c from open_close to file_write: the device reading and writing system memory (anonymous,
 * huge, hugetlbfs, file-backed), and copy-on-write across fork.
 *
 * Differences common to the ports: `buffer->mirror` is the Uint8Array passed as the command's buffer
 * (cmd->ptr); READ and MIGRATE_TO_DEV copy into it only when the command succeeds, as dmirror_read and
 * dmirror_migrate_to_device copy their bounce buffer out only when ret == 0, and WRITE reads from it. A
 * command that fails throws KernelError (the C helper's -errno) and leaves the buffer as it was.
 */
import { EFAULT, EPERM, KernelError } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import { MADV_HUGEPAGE } from "../mm/mman.js";
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from "../mm/mmap.js";
import {
  align,
  expectConsistent,
  expectEqual,
  expectErrno,
  expectInts,
  type HmmTest,
  ints,
  NINTS,
  NPAGES,
  PMD_SIZE,
  SIZE,
  setup,
  TestSkipped,
  teardown,
} from "./harness.js";

export const anonTests: HmmTest[] = [
  {
    // TEST_F(hmm, open_close): the fixture's open and close succeed.
    name: "open_close",
    run(context) {
      teardown(setup(context));
    },
  },
  {
    // TEST_F(hmm, anon_read): read anonymous memory through the device, including an untouched page
    // (pte_none) and a zero page.
    name: "anon_read",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS });
      // Initialise from the third page on: the first two pages stay untouched.
      const first = (2 * PAGE_SIZE) / 4;
      f.proc.write(
        ptr + 2 * PAGE_SIZE,
        ints(NINTS - first, (i) => i + first),
      );
      f.proc.mprotect(ptr, SIZE, PROT_READ);
      // Reading page 1 maps the zero page there; page 0 stays pte_none.
      expectEqual(f.proc.readU32(ptr + PAGE_SIZE), 0, "val");
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.read(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectEqual(ret.faults, 1, "faults");
      expectInts(mirror, (i) => (i < first ? 0 : i), "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_read_prot): READ of a PROT_NONE buffer fails with EFAULT and copies nothing.
    name: "anon_read_prot",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      // Initialise the mirror buffer so we can verify it isn't written.
      const mirror = ints(NINTS, (i) => -i);
      f.proc.mprotect(ptr, SIZE, 0);
      expectErrno(() => f.fd.read(ptr, NPAGES, mirror), EFAULT, "READ");
      f.proc.mprotect(ptr, SIZE, PROT_READ);
      expectInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      expectInts(mirror, (i) => -i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write): WRITE into untouched anonymous memory.
    name: "anon_write",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE);
      const mirror = ints(NINTS, (i) => i);
      const ret = f.fd.write(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectEqual(ret.faults, 1, "faults");
      expectInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write_prot): WRITE to a read-only mapping fails with EPERM and changes nothing;
    // after mprotect(PROT_READ|PROT_WRITE) it succeeds, replacing the zero page.
    name: "anon_write_prot",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ, flags: MAP_PRIVATE | MAP_ANONYMOUS });
      // Simulate a device reading a zero page of memory.
      let mirror: Uint8Array = new Uint8Array(SIZE);
      const one = f.fd.read(ptr, 1, mirror);
      expectEqual(one.cpages, 1, "cpages");
      expectEqual(one.faults, 1, "faults");
      mirror = ints(NINTS, (i) => i);
      expectErrno(() => f.fd.write(ptr, NPAGES, mirror), EPERM, "WRITE");
      expectInts(f.proc.read(ptr, SIZE), () => 0, "ptr");
      f.proc.mprotect(ptr, SIZE, PROT_READ | PROT_WRITE);
      const ret = f.fd.write(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectEqual(ret.faults, 1, "faults");
      expectInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write_child): the child of a fork writes its copy of a private buffer through
    // the device; the parent's copy is unchanged. Loops over migrate = {0, 1} and use_thp = {0, 1}:
    // with migrate the buffer is on the device at fork (in the coherent variant the child then reads
    // device memory directly; in the private one its reads fault the pages back). With migrate the
    // mirror holds the migration's read-back (i), which is what the child then writes.
    //
    // Differences: with use_thp the range gets MADV_HUGEPAGE, which succeeds; hmmsim has no THP yet,
    // so the range stays in 4 KiB pages, as on a kernel whose transparent_hugepage is "never". There
    // is no real concurrency between the processes: the child runs to exit() first, then the parent
    // does what follows waitpid(). The child inherits the fixture's descriptor (closed at its exit,
    // which leaves the parent's open) and opens device 0 with its own DeviceFile (hmm_open(0), device
    // 0 in both variants), as the C child does.
    name: "anon_write_child",
    run(context) {
      const f = setup(context);
      for (const migrate of [false, true]) {
        for (const useThp of [false, true]) {
          const npages = align(useThp ? PMD_SIZE : SIZE, PAGE_SIZE) / PAGE_SIZE;
          const size = npages * PAGE_SIZE;
          const nints = size / 4;
          const oldPtr = f.proc.mmap(2 * size);
          let ptr = oldPtr;
          if (useThp) {
            ptr = align(oldPtr, size);
            f.proc.madvise(ptr, size, MADV_HUGEPAGE);
          }
          f.proc.write(
            ptr,
            ints(nints, (i) => i),
          );
          const mirror = ints(nints, (i) => -i);
          if (migrate) {
            // The read-back overwrites the mirror with the migrated data (ptr[i] = i).
            const ret = f.fd.migrateToDevice(ptr, npages, mirror);
            expectEqual(ret.cpages, npages, "cpages");
          }
          const child = f.proc.fork();
          {
            // Child.
            expectInts(child.read(ptr, size), (i) => i, "child ptr");
            if (!migrate) expectInts(mirror, (i) => -i, "child mirror");
            const childFd = f.system.device(0).open(child);
            const ret = childFd.write(ptr, npages, mirror);
            expectEqual(ret.cpages, npages, "child cpages");
            expectEqual(ret.faults, 1, "child faults");
            if (!migrate) expectInts(child.read(ptr, size), (i) => -i, "child ptr after WRITE");
            childFd.close();
            child.exit();
          }
          // Parent, after waitpid: WIFEXITED, and its copy is unchanged.
          expectEqual(child.exited, true, "WIFEXITED");
          expectInts(f.proc.read(ptr, size), (i) => i, "parent ptr");
          f.proc.munmap(oldPtr, 2 * size);
          expectConsistent(f.system);
        }
      }
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write_child_shared): with MAP_SHARED anonymous memory the child's device write
    // is seen by the parent (no COW).
    //
    // Differences: as in anon_write_child, the child runs to exit() before the parent continues, and
    // opens device 0 with its own DeviceFile.
    name: "anon_write_child_shared",
    run(context) {
      const f = setup(context);
      const ptr = f.proc.mmap(SIZE, { flags: MAP_SHARED | MAP_ANONYMOUS });
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = ints(NINTS, (i) => -i);
      const child = f.proc.fork();
      {
        // Child.
        expectInts(child.read(ptr, SIZE), (i) => i, "child ptr");
        expectInts(mirror, (i) => -i, "child mirror");
        const childFd = f.system.device(0).open(child);
        const ret = childFd.write(ptr, NPAGES, mirror);
        expectEqual(ret.cpages, NPAGES, "child cpages");
        expectEqual(ret.faults, 1, "child faults");
        expectInts(child.read(ptr, SIZE), (i) => -i, "child ptr after WRITE");
        childFd.close();
        child.exit();
      }
      expectEqual(child.exited, true, "WIFEXITED");
      expectInts(f.proc.read(ptr, SIZE), (i) => -i, "parent ptr");
      // The C parent returns without freeing the buffer; unmap it so the final check sees a plain state.
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write_huge): WRITE of a 2 MiB aligned range under MADV_HUGEPAGE.
    //
    // Difference: no THP yet, so the range stays in 4 KiB pages (transparent_hugepage "never"); the
    // test's assertions hold either way.
    name: "anon_write_huge",
    run(context) {
      const f = setup(context);
      const size = PMD_SIZE;
      const oldPtr = f.proc.mmap(2 * size);
      const npages = size / PAGE_SIZE;
      const ptr = align(oldPtr, size);
      f.proc.madvise(ptr, size, MADV_HUGEPAGE);
      const mirror = ints(size / 4, (i) => i);
      const ret = f.fd.write(ptr, npages, mirror);
      expectEqual(ret.cpages, npages, "cpages");
      expectEqual(ret.faults, 1, "faults");
      expectInts(f.proc.read(ptr, size), (i) => i, "ptr");
      f.proc.munmap(oldPtr, 2 * size);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write_hugetlbfs): WRITE to a MAP_HUGETLB mapping of the default huge page size
    // (2 MiB): the device's write faults the huge page in once and the CPU reads it back. Where the mmap
    // fails (no huge page free) the test SKIPs with the kernel's reason.
    name: "anon_write_hugetlbfs",
    run(context) {
      const f = setup(context);
      const size = align(PMD_SIZE, PMD_SIZE);
      let ptr: number;
      try {
        ptr = f.proc.mmap(size, { flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB });
      } catch (error) {
        if (!(error instanceof KernelError)) throw error;
        teardown(f);
        throw new TestSkipped("Huge page could not be allocated");
      }
      const npages = size / PAGE_SIZE;
      const mirror = ints(size / 4, (i) => i);
      const ret = f.fd.write(ptr, npages, mirror);
      expectEqual(ret.cpages, npages, "cpages");
      expectEqual(ret.faults, 1, "faults");
      expectInts(f.proc.read(ptr, size), (i) => i, "ptr");
      f.proc.munmap(ptr, size);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, file_read): READ of a read-only MAP_SHARED mapping of a tmpfs file sees its contents.
    name: "file_read",
    run(context) {
      const f = setup(context);
      const file = f.system.createFile("hmm-file_read", SIZE);
      let mirror = ints(NINTS, (i) => i);
      expectEqual(file.write(0, mirror), SIZE, "pwrite");
      mirror = new Uint8Array(SIZE);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ, flags: MAP_SHARED, file });
      const ret = f.fd.read(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectEqual(ret.faults, 1, "faults");
      expectInts(mirror, (i) => i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, file_write): WRITE through a MAP_SHARED file mapping reaches the file itself.
    name: "file_write",
    run(context) {
      const f = setup(context);
      const file = f.system.createFile("hmm-file_write", SIZE);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ | PROT_WRITE, flags: MAP_SHARED, file });
      const mirror = ints(NINTS, (i) => i);
      const ret = f.fd.write(ptr, NPAGES, mirror);
      expectEqual(ret.cpages, NPAGES, "cpages");
      expectEqual(ret.faults, 1, "faults");
      expectInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      const back = file.read(0, SIZE);
      expectEqual(back.length, SIZE, "pread");
      expectInts(back, (i) => i, "file");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
];
