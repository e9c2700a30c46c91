/**
 * hmm-tests.c's mixedmap, snapshot, compound, double_map and hmm_cow_in_device: what hmm_range_fault
 * reports of the CPU page table without faulting (HMM_DMIRROR_SNAPSHOT), of the device file's own
 * mapping too, two devices reading one buffer, and copy-on-write of pages that live in device memory.
 */
import { KernelError } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import {
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
} from "../drivers/dmirror_uapi.js";
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE, PROT_NONE, PROT_READ, PROT_WRITE } from "../mm/mmap.js";
import {
  expectEqual,
  expectInts,
  type HmmTest,
  ints,
  isCoherent,
  PMD_SIZE,
  setup,
  setup2,
  teardown,
  teardown2,
} from "./harness.js";

export const snapshotTests: HmmTest[] = [
  {
    // TEST_F(hmm, mixedmap): mmap of the device file itself, MAP_PRIVATE: dmirror_fops_mmap fills it
    // with zeroed pages by vm_insert_page (a VM_MIXEDMAP VMA), which hmm_range_fault reports like any
    // page, read-only in a private mapping.
    name: "mixedmap",
    minimum: {
      protocol: "modern",
      why: "dmirror_fops_mmap and hmm_range_fault on VM_MIXEDMAP came with the mixedmap test (2022)",
    },
    run(context) {
      const f = setup(context);
      const npages = 1;
      const size = npages * PAGE_SIZE;
      const ptr = f.proc.mmap(size, { prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE, file: f.fd });
      const m = f.fd.snapshot(ptr, npages);
      expectEqual(m.length, npages, "cpages");
      expectEqual(m[0], HMM_DMIRROR_PROT_READ, "m[0]");
      f.proc.munmap(ptr, size);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm2, snapshot): one code per page of a range holding every kind of entry: a PROT_NONE
    // page and a hole (ERROR), a zero page, a read-only and a writable page, and pages on each device.
    name: "snapshot",
    run(context) {
      const f = setup2(context);
      const npages = 7;
      const size = npages * PAGE_SIZE;
      const p = f.proc.mmap(size, { prot: PROT_NONE, flags: MAP_PRIVATE | MAP_ANONYMOUS });
      f.proc.munmap(p + PAGE_SIZE, PAGE_SIZE);
      // Page 2 will be read-only zero page.
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
      // Pages 4-6 will be read-write.
      f.proc.mprotect(p + 4 * PAGE_SIZE, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE);
      f.proc.write(
        p + 4 * PAGE_SIZE,
        ints(1, () => val),
      );
      // Page 5 will be migrated to device 0, page 6 to device 1.
      expectEqual(f.fd0.migrateToDevice(p + 5 * PAGE_SIZE, 1, new Uint8Array(PAGE_SIZE)).cpages, 1, "page 5");
      expectEqual(f.fd1.migrateToDevice(p + 6 * PAGE_SIZE, 1, new Uint8Array(PAGE_SIZE)).cpages, 1, "page 6");
      const m = f.fd0.snapshot(p, npages);
      expectEqual(m[0], HMM_DMIRROR_PROT_ERROR, "m[0]");
      expectEqual(m[1], HMM_DMIRROR_PROT_ERROR, "m[1]");
      expectEqual(m[2], HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ, "m[2]");
      expectEqual(m[3], HMM_DMIRROR_PROT_READ, "m[3]");
      expectEqual(m[4], HMM_DMIRROR_PROT_WRITE, "m[4]");
      if (!isCoherent(context)) {
        expectEqual(m[5], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE, "m[5]");
        expectEqual(m[6], HMM_DMIRROR_PROT_NONE, "m[6]");
      } else {
        expectEqual(m[5], HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE, "m[5]");
        expectEqual(m[6], HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE | HMM_DMIRROR_PROT_WRITE, "m[6]");
      }
      f.proc.munmap(p, size);
      teardown2(f);
    },
  },
  {
    // TEST_F(hmm, compound): SNAPSHOT of a hugetlbfs page reports HMM_DMIRROR_PROT_PMD on every 4 KiB
    // page, writable and then read-only. When the MAP_HUGETLB mmap fails (no huge page free) the kernel
    // test returns (passes) without checking anything, and so does the port.
    name: "compound",
    run(context) {
      const f = setup(context);
      const size = PMD_SIZE;
      const npages = size / PAGE_SIZE;
      let ptr: number;
      try {
        ptr = f.proc.mmap(size, {
          prot: PROT_READ | PROT_WRITE,
          flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
        });
      } catch (error) {
        if (!(error instanceof KernelError)) throw error;
        teardown(f);
        return;
      }
      f.proc.write(
        ptr,
        ints(size / 4, (i) => i),
      );
      let m = f.fd.snapshot(ptr, npages);
      for (let i = 0; i < npages; i++)
        expectEqual(m[i], HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD, `m[${i}] (writable)`);
      f.proc.mprotect(ptr, size, PROT_READ);
      m = f.fd.snapshot(ptr, npages);
      for (let i = 0; i < npages; i++)
        expectEqual(m[i], HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_PMD, `m[${i}] (read-only)`);
      f.proc.munmap(ptr, size);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm2, double_map): both devices read a read-only buffer; after the second device migrates
    // it, the first still reads it (through the CPU page table: a fault back in the private variant,
    // the device-coherent pages themselves in the coherent one).
    name: "double_map",
    run(context) {
      const f = setup2(context);
      const npages = 6;
      const size = npages * PAGE_SIZE;
      const ptr = f.proc.mmap(size);
      f.proc.write(
        ptr,
        ints(size / 4, (i) => i),
      );
      f.proc.mprotect(ptr, size, PROT_READ);
      const mirror = new Uint8Array(size);
      for (const [fd, which] of [
        [f.fd0, "device 0"],
        [f.fd1, "device 1"],
      ] as const) {
        const ret = fd.read(ptr, npages, mirror);
        expectEqual(ret.cpages, npages, `${which} cpages`);
        expectEqual(ret.faults, 1, `${which} faults`);
        expectInts(mirror, (i) => i, `${which} mirror`);
      }
      const moved = f.fd1.migrateToDevice(ptr, npages, mirror);
      expectEqual(moved.cpages, npages, "MIGRATE_TO_DEV cpages");
      const ret = f.fd0.read(ptr, npages, mirror);
      expectEqual(ret.cpages, npages, "device 0 cpages after migration");
      expectEqual(ret.faults, 1, "device 0 faults after migration");
      expectInts(mirror, (i) => i, "device 0 mirror after migration");
      f.proc.munmap(ptr, size);
      teardown2(f);
    },
  },
  {
    // TEST_F(hmm, hmm_cow_in_device): migrate, fork, and the parent writes every page: in the private
    // variant each write faults the shared device page back to RAM and then copies it; in the coherent
    // one the copy is made straight from device memory. Then the child is killed, and the parent's
    // pages are writable system pages.
    //
    // Difference: the child, which spins until SIGTERM, does nothing here until the parent kills it
    // (exit), and WIFSIGNALED/WTERMSIG are not modelled.
    name: "hmm_cow_in_device",
    run(context) {
      const f = setup(context);
      const npages = 4;
      const size = npages * PAGE_SIZE;
      const ptr = f.proc.mmap(size);
      f.proc.write(
        ptr,
        ints(size / 4, (i) => i),
      );
      const ret = f.fd.migrateToDevice(ptr, npages, new Uint8Array(size));
      expectEqual(ret.cpages, npages, "cpages");
      const child = f.proc.fork();
      f.proc.write(
        ptr,
        ints(size / 4, (i) => i),
      );
      child.exit();
      expectEqual(child.exited, true, "child killed");
      const m = f.fd.snapshot(ptr, npages);
      for (let i = 0; i < npages; i++) expectEqual(m[i], HMM_DMIRROR_PROT_WRITE, `m[${i}]`);
      f.proc.munmap(ptr, size);
      teardown(f);
    },
  },
];
