/**
 * The kernel's own HMM test suite (tools/testing/selftests/mm/hmm-tests.c), ported test by test onto
 * hmmsim's dmirror. Each entry keeps the kernel test's name, builds its own System under the protocol
 * it is given, makes the C test's assertions, and ends by asserting that the whole model state is
 * consistent (System.checkInvariants() is empty).
 *
 * Only the `hmm_device_private` variant is ported (device 0): the coherent variants need device
 * minors 2 and 3, which the kernel SKIPs without the spm_addr module parameters and hmmsim does not
 * model. The fixture's open and close of the device file are the first and last steps of each port.
 *
 * Differences common to every port:
 * - `buffer->mirror` is the Uint8Array passed as the command's buffer (cmd->ptr): READ and
 *   MIGRATE_TO_DEV copy into it only when the command succeeds, as dmirror_read and
 *   dmirror_migrate_to_device copy their bounce buffer out only when ret == 0, and WRITE reads from it.
 *   A command that fails throws KernelError (the C helper's -errno) and leaves the buffer as it was.
 * - This module is used by `hmmsim conformance` as well as by vitest, so it imports nothing from vitest.
 */
import assert from "node:assert/strict";
import { EFAULT, EINVAL, EPERM } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import type { DeviceFile } from "../device.js";
import type { ProtocolVersion } from "../mm/kernel.js";
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from "../mm/mmap.js";
import type { Process } from "../process.js";
import { System } from "../system.js";
import { errnoOf } from "./errno_of.js";

export interface HmmTest {
  name: string;
  run(protocol: ProtocolVersion): void;
}

/** HMM_BUFFER_SIZE (1024 << 12) and npages = ALIGN(HMM_BUFFER_SIZE, page_size) >> page_shift. */
const HMM_BUFFER_SIZE = 1024 << 12;
const NPAGES = Math.ceil(HMM_BUFFER_SIZE / PAGE_SIZE);
const SIZE = NPAGES * PAGE_SIZE;
/** NTIMES in hmm-tests.c. */
const NTIMES = 10;
/** Ints per buffer: the C tests index `int *ptr` over size / sizeof(int). */
const NINTS = SIZE / 4;

/** FIXTURE(hmm): a system, a process and device 0 opened by it. */
interface Fixture {
  system: System;
  proc: Process;
  fd: DeviceFile;
}

function setup(protocol: ProtocolVersion): Fixture {
  const system = new System({ ram: "64MiB", protocol, store: "bytes" });
  const proc = system.spawn();
  const fd = system.device(0).open(proc);
  return { system, proc, fd };
}

/** FIXTURE_TEARDOWN: close(fd) must succeed; then the whole state must be consistent. */
function teardown(f: Fixture): void {
  f.fd.close();
  assert.deepEqual(f.system.checkInvariants(), []);
}

/** An int buffer of `count` ints with ptr[i] = value(i), as bytes. */
function ints(count: number, value: (i: number) => number): Uint8Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = value(i);
  return new Uint8Array(out.buffer);
}

/** The bytes as ints (the C tests read through `int *`). */
function asInts(bytes: Uint8Array): Int32Array {
  const copy = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Int32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
}

/** ASSERT_EQ(ptr[i], expected(i)) for every i, reporting the first index that differs. */
function assertInts(bytes: Uint8Array, expected: (i: number) => number, what: string, from = 0): void {
  const view = asInts(bytes);
  for (let i = from; i < view.length; i++) {
    if (view[i] !== expected(i)) assert.fail(`${what}: [${i}] is ${view[i]}, expected ${expected(i)}`);
  }
}

export const hmmTests: HmmTest[] = [
  {
    // TEST_F(hmm, open_close): the fixture's open and close succeed.
    name: "open_close",
    run(protocol) {
      const f = setup(protocol);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_read): read anonymous memory through the device, including an untouched page
    // (pte_none) and a zero page.
    name: "anon_read",
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS });
      // Initialise from the third page on: the first two pages stay untouched.
      const first = (2 * PAGE_SIZE) / 4;
      f.proc.write(
        ptr + 2 * PAGE_SIZE,
        ints(NINTS - first, (i) => i + first),
      );
      f.proc.mprotect(ptr, SIZE, PROT_READ);
      // Reading page 1 maps the zero page there; page 0 stays pte_none.
      assert.equal(f.proc.readU32(ptr + PAGE_SIZE), 0);
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.read(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assert.equal(ret.faults, 1);
      assertInts(mirror, (i) => (i < first ? 0 : i), "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_read_prot): READ of a PROT_NONE buffer fails with EFAULT and copies nothing.
    name: "anon_read_prot",
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      // Initialise the mirror buffer so we can verify it isn't written.
      const mirror = ints(NINTS, (i) => -i);
      f.proc.mprotect(ptr, SIZE, 0);
      assert.equal(
        errnoOf(() => f.fd.read(ptr, NPAGES, mirror)),
        EFAULT,
      );
      f.proc.mprotect(ptr, SIZE, PROT_READ);
      assertInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      assertInts(mirror, (i) => -i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write): WRITE into untouched anonymous memory.
    name: "anon_write",
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE);
      const mirror = ints(NINTS, (i) => i);
      const ret = f.fd.write(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assert.equal(ret.faults, 1);
      assertInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write_prot): WRITE to a read-only mapping fails with EPERM and changes nothing;
    // after mprotect(PROT_READ|PROT_WRITE) it succeeds, replacing the zero page.
    name: "anon_write_prot",
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ, flags: MAP_PRIVATE | MAP_ANONYMOUS });
      // Simulate a device reading a zero page of memory.
      let mirror: Uint8Array = new Uint8Array(SIZE);
      const one = f.fd.read(ptr, 1, mirror);
      assert.equal(one.cpages, 1);
      assert.equal(one.faults, 1);
      mirror = ints(NINTS, (i) => i);
      assert.equal(
        errnoOf(() => f.fd.write(ptr, NPAGES, mirror)),
        EPERM,
      );
      assertInts(f.proc.read(ptr, SIZE), () => 0, "ptr");
      f.proc.mprotect(ptr, SIZE, PROT_READ | PROT_WRITE);
      const ret = f.fd.write(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assert.equal(ret.faults, 1);
      assertInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_write_child): the child of a fork writes its copy of a private buffer through
    // the device; the parent's copy is unchanged. Loops over migrate = {0, 1}: with migrate the buffer
    // is on the device at fork, and the child's CPU reads fault its pages back to RAM. With migrate the
    // mirror holds the migration's read-back (i), which is what the child then writes.
    //
    // Differences: no THP (the use_thp = 1 iterations need MADV_HUGEPAGE, which hmmsim does not model),
    // so only the 1024-page iterations run. There is no real concurrency between the processes: the
    // child runs to exit() first, then the parent does what follows waitpid(). The child inherits the
    // fixture's descriptor (closed at its exit, which leaves the parent's open) and opens device 0
    // with its own DeviceFile (hmm_open(0)), as the C child does.
    name: "anon_write_child",
    run(protocol) {
      const f = setup(protocol);
      for (const migrate of [false, true]) {
        // mmap of 2 * size, of which the first size bytes are used (the THP iterations align inside it).
        const ptr = f.proc.mmap(2 * SIZE);
        f.proc.write(
          ptr,
          ints(NINTS, (i) => i),
        );
        const mirror = ints(NINTS, (i) => -i);
        if (migrate) {
          // The read-back overwrites the mirror with the migrated data (ptr[i] = i).
          const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
          assert.equal(ret.cpages, NPAGES);
        }
        const child = f.proc.fork();
        {
          // Child.
          assertInts(child.read(ptr, SIZE), (i) => i, "child ptr");
          if (!migrate) assertInts(mirror, (i) => -i, "child mirror");
          const childFd = f.system.device(0).open(child);
          const ret = childFd.write(ptr, NPAGES, mirror);
          assert.equal(ret.cpages, NPAGES);
          assert.equal(ret.faults, 1);
          if (!migrate) assertInts(child.read(ptr, SIZE), (i) => -i, "child ptr after WRITE");
          childFd.close();
          child.exit();
        }
        // Parent, after waitpid: WIFEXITED, and its copy is unchanged.
        assert.equal(child.exited, true);
        assertInts(f.proc.read(ptr, SIZE), (i) => i, "parent ptr");
        f.proc.munmap(ptr, 2 * SIZE);
        assert.deepEqual(f.system.checkInvariants(), []);
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
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE, { flags: MAP_SHARED | MAP_ANONYMOUS });
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = ints(NINTS, (i) => -i);
      const child = f.proc.fork();
      {
        // Child.
        assertInts(child.read(ptr, SIZE), (i) => i, "child ptr");
        assertInts(mirror, (i) => -i, "child mirror");
        const childFd = f.system.device(0).open(child);
        const ret = childFd.write(ptr, NPAGES, mirror);
        assert.equal(ret.cpages, NPAGES);
        assert.equal(ret.faults, 1);
        assertInts(child.read(ptr, SIZE), (i) => -i, "child ptr after WRITE");
        childFd.close();
        child.exit();
      }
      assert.equal(child.exited, true);
      assertInts(f.proc.read(ptr, SIZE), (i) => -i, "parent ptr");
      // The C parent returns without freeing the buffer; unmap it so the final check sees a plain state.
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, file_read): READ of a read-only MAP_SHARED mapping of a tmpfs file sees its contents.
    name: "file_read",
    run(protocol) {
      const f = setup(protocol);
      const file = f.system.createFile("hmm-file_read", SIZE);
      let mirror = ints(NINTS, (i) => i);
      assert.equal(file.write(0, mirror), SIZE);
      mirror = new Uint8Array(SIZE);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ, flags: MAP_SHARED, file });
      const ret = f.fd.read(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assert.equal(ret.faults, 1);
      assertInts(mirror, (i) => i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, file_write): WRITE through a MAP_SHARED file mapping reaches the file itself.
    name: "file_write",
    run(protocol) {
      const f = setup(protocol);
      const file = f.system.createFile("hmm-file_write", SIZE);
      const ptr = f.proc.mmap(SIZE, { prot: PROT_READ | PROT_WRITE, flags: MAP_SHARED, file });
      const mirror = ints(NINTS, (i) => i);
      const ret = f.fd.write(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assert.equal(ret.faults, 1);
      assertInts(f.proc.read(ptr, SIZE), (i) => i, "ptr");
      const back = file.read(0, SIZE);
      assert.equal(back.length, SIZE);
      assertInts(back, (i) => i, "file");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate): migrate anonymous memory to device private memory.
    name: "migrate",
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      // Check what the device read.
      assertInts(mirror, (i) => i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_fault): migrate, fault the first half back to RAM with CPU reads, migrate
    // again: cpages is npages again (the second half is still on the device and mirrored).
    name: "migrate_fault",
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      let ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assertInts(mirror, (i) => i, "mirror");
      // Fault half the pages back to system memory and check them.
      assertInts(f.proc.read(ptr, SIZE / 2), (i) => i, "ptr (first half)");
      // Migrate memory to the device again.
      ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assertInts(mirror, (i) => i, "mirror");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_release): migrate, release the device's memory (HMM_DMIRROR_RELEASE:
    // dmirror_device_remove_chunks evicts every chunk), then fault half the pages back and check them.
    //
    // Runs under both versions. Under "4.14" the command does not exist: test_hmm.c gained it together
    // with migrate_device_range (6.1), which eviction needs, so the ioctl answers -EINVAL, its default,
    // the pages stay on the device and the CPU reads fault them back through migrate_to_ram; the port
    // checks that instead of ASSERT_EQ(ret, 0).
    name: "migrate_release",
    run(protocol) {
      const f = setup(protocol);
      const ptr = f.proc.mmap(SIZE);
      f.proc.write(
        ptr,
        ints(NINTS, (i) => i),
      );
      const mirror = new Uint8Array(SIZE);
      const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
      assert.equal(ret.cpages, NPAGES);
      assertInts(mirror, (i) => i, "mirror");
      // Release device memory (the ioctl checks buffer->ptr and npages as for any command).
      if (protocol === "modern") {
        f.fd.release(ptr, NPAGES);
        assert.equal(f.system.device(0).usedPages, 0);
      } else {
        assert.equal(
          errnoOf(() => f.fd.release(ptr, NPAGES)),
          EINVAL,
        );
      }
      // Fault pages back to system memory and check them.
      assertInts(f.proc.read(ptr, SIZE / 2), (i) => i, "ptr (first half)");
      f.proc.munmap(ptr, SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_multiple): NTIMES times, a fresh buffer is migrated and read back by the CPU
    // (which faults every page back). The MIGRATE_TO_SYS step is for the coherent variant only.
    name: "migrate_multiple",
    run(protocol) {
      const f = setup(protocol);
      for (let c = 0; c < NTIMES; c++) {
        const ptr = f.proc.mmap(SIZE);
        f.proc.write(
          ptr,
          ints(NINTS, (i) => i),
        );
        const mirror = new Uint8Array(SIZE);
        const ret = f.fd.migrateToDevice(ptr, NPAGES, mirror);
        assert.equal(ret.cpages, NPAGES);
        // Check what the device read.
        assertInts(mirror, (i) => i, `mirror (pass ${c})`);
        // Migrate back to system memory (through CPU faults) and check them.
        assertInts(f.proc.read(ptr, SIZE), (i) => i, `ptr (pass ${c})`);
        f.proc.munmap(ptr, SIZE);
      }
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, anon_read_multiple): NTIMES times, a fresh buffer with ptr[i] = i + c is read.
    name: "anon_read_multiple",
    run(protocol) {
      const f = setup(protocol);
      for (let c = 0; c < NTIMES; c++) {
        const ptr = f.proc.mmap(SIZE);
        f.proc.write(
          ptr,
          ints(NINTS, (i) => i + c),
        );
        const mirror = new Uint8Array(SIZE);
        const ret = f.fd.read(ptr, NPAGES, mirror);
        assert.equal(ret.cpages, NPAGES);
        assert.equal(ret.faults, 1);
        assertInts(mirror, (i) => i + c, `mirror (pass ${c})`);
        f.proc.munmap(ptr, SIZE);
      }
      teardown(f);
    },
  },
];
