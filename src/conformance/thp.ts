/**
 * hmm-tests.c from migrate_anon_huge_empty to migrate_remap_fault: migration of a PMD-sized,
 * PMD-aligned range given MADV_HUGEPAGE (or, in the loops, MADV_NOHUGEPAGE), and the CPU faulting it
 * back whole, after MADV_FREE, after a partial munmap and after mremap to another place.
 *
 * The ranges are real THPs here (transparent_hugepage "madvise", the kernel's default): a write maps
 * a 2 MiB folio by a huge PMD, a read the huge zero folio. hmmsim has no device-private THP yet
 * (MIGRATE_VMA_SELECT_COMPOUND): migrate_vma_collect splits the THP, or the huge zero PMD, and migrates
 * 512 pages, as kernels before 6.19 do and as 6.19 does for a THP it cannot take whole. These tests
 * assert only what the kernel test asserts (cpages, the bytes, the return codes), which holds on both
 * paths; what device THPs add (one device folio, its PMD entry, splitting it on the partial munmap or
 * the mremap) comes with them. migrate_anon_huge_err and migrate_anon_huge_zero_err are not ported:
 * their HMM_DMIRROR_FLAG_FAIL_ALLOC fails the large device (or system) allocation so that test_hmm.c
 * falls back to 4 KiB pages; with 4 KiB migration it fails a 4 KiB page instead, that page is not
 * migrated and the READ-back fails with -ENOENT, on the kernel as here.
 */
import { KernelError } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import {
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_READ,
  PROT_WRITE,
} from "../mm/mman.js";
import {
  align,
  expectConsistent,
  expectEqual,
  expectInts,
  type Fixture,
  type HmmTest,
  ints,
  ONEKB,
  ONEMEG,
  PMD_SIZE,
  setup,
  teardown,
} from "./harness.js";

/** read_pmd_pagesize(): hpage_pmd_size, 2 MiB on x86-64. */
const PMD_PAGE_SIZE = PMD_SIZE;
const PMD_NPAGES = PMD_PAGE_SIZE / PAGE_SIZE;
const PMD_NINTS = PMD_PAGE_SIZE / 4;

/** The offsets of migrate_partial_unmap_fault and migrate_remap_fault. */
const OFFSETS = [0, 512 * ONEKB, ONEMEG] as const;

/**
 * The common start of the migrate_anon_huge tests: 2 × PMD size mapped with `prot`, and the
 * PMD-aligned PMD-sized part inside it given MADV_HUGEPAGE. Returns the mapping and that part.
 */
function hugeBuffer(f: Fixture, prot: number): { oldPtr: number; map: number } {
  const oldPtr = f.proc.mmap(2 * PMD_PAGE_SIZE, { prot, flags: MAP_PRIVATE | MAP_ANONYMOUS });
  const map = align(oldPtr, PMD_PAGE_SIZE);
  f.proc.madvise(map, PMD_PAGE_SIZE, MADV_HUGEPAGE);
  return { oldPtr, map };
}

/** hmm_migrate_sys_to_dev of the PMD-sized part: 0, every page migrated; the mirror holds the bytes. */
function migrateWhole(f: Fixture, ptr: number): Uint8Array {
  // The C tests memset the mirror to 0xFF first, so a page the device did not read shows.
  const mirror = new Uint8Array(PMD_PAGE_SIZE).fill(0xff);
  const ret = f.fd.migrateToDevice(ptr, PMD_NPAGES, mirror);
  expectEqual(ret.cpages, PMD_NPAGES, "cpages");
  return mirror;
}

/**
 * hmmsim's own check, beside the kernel test's: a huge PMD maps the 2 MiB at `ptr` exactly when the
 * range asked for one (MADV_HUGEPAGE) and was touched, so that the port runs on a THP where the kernel
 * test does.
 */
function expectPmdMapped(f: Fixture, ptr: number, huge: boolean): void {
  const leaf = f.system.kernel.pt.readPmdLeaf(f.proc.mm.root, ptr / PAGE_SIZE);
  expectEqual(leaf !== 0, huge, "hmmsim: a huge PMD maps the range");
}

const SINCE_5_7 = {
  protocol: "modern",
  why: "MREMAP_DONTUNMAP came with 5.7",
} as const;

export const thpTests: HmmTest[] = [
  {
    // TEST_F(hmm, migrate_anon_huge_empty): migrate a huge range never touched (read-only): the
    // device reads zeros.
    name: "migrate_anon_huge_empty",
    run(context) {
      const f = setup(context);
      const { oldPtr, map } = hugeBuffer(f, PROT_READ);
      expectInts(migrateWhole(f, map), () => 0, "mirror");
      f.proc.munmap(oldPtr, 2 * PMD_PAGE_SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_anon_huge_zero): a read fault first maps the (huge) zero page; the device
    // reads zeros, and so does the CPU faulting every page back.
    name: "migrate_anon_huge_zero",
    run(context) {
      const f = setup(context);
      const { oldPtr, map } = hugeBuffer(f, PROT_READ);
      expectInts(f.proc.read(map, 4), () => 0, "val");
      expectPmdMapped(f, map, true);
      expectInts(migrateWhole(f, map), () => 0, "mirror");
      expectInts(f.proc.read(map, PMD_PAGE_SIZE), () => 0, "ptr");
      f.proc.munmap(oldPtr, 2 * PMD_PAGE_SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_anon_huge_free): migrate a written huge range, then MADV_FREE it, which
    // succeeds over the device entries.
    name: "migrate_anon_huge_free",
    run(context) {
      const f = setup(context);
      const { oldPtr, map } = hugeBuffer(f, PROT_READ | PROT_WRITE);
      f.proc.write(
        map,
        ints(PMD_NINTS, (i) => i),
      );
      expectPmdMapped(f, map, true);
      expectInts(migrateWhole(f, map), (i) => i, "mirror");
      f.proc.madvise(map, PMD_PAGE_SIZE, MADV_FREE);
      f.proc.munmap(oldPtr, 2 * PMD_PAGE_SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_anon_huge_fault): migrate a written huge range and fault it all back.
    name: "migrate_anon_huge_fault",
    run(context) {
      const f = setup(context);
      const { oldPtr, map } = hugeBuffer(f, PROT_READ | PROT_WRITE);
      f.proc.write(
        map,
        ints(PMD_NINTS, (i) => i),
      );
      expectPmdMapped(f, map, true);
      expectInts(migrateWhole(f, map), (i) => i, "mirror");
      expectInts(f.proc.read(map, PMD_PAGE_SIZE), (i) => i, "ptr");
      f.proc.munmap(oldPtr, 2 * PMD_PAGE_SIZE);
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_partial_unmap_fault): migrate a PMD-sized range (with MADV_HUGEPAGE, then
    // with MADV_NOHUGEPAGE), munmap 1 MiB of it at offset 0, 512 KiB or 1 MiB, and fault the rest
    // back: every remaining byte is what was written.
    name: "migrate_partial_unmap_fault",
    run(context) {
      const f = setup(context);
      for (const useThp of [false, true]) {
        for (const offset of OFFSETS) {
          const oldPtr = f.proc.mmap(2 * PMD_PAGE_SIZE);
          const map = align(oldPtr, PMD_PAGE_SIZE);
          f.proc.madvise(map, PMD_PAGE_SIZE, useThp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
          f.proc.write(
            map,
            ints(PMD_NINTS, (i) => i),
          );
          expectPmdMapped(f, map, useThp);
          expectInts(migrateWhole(f, map), (i) => i, "mirror");
          f.proc.munmap(map + offset, ONEMEG);
          if (offset > 0) expectInts(f.proc.read(map, offset), (i) => i, `ptr below ${offset}`);
          const after = offset + ONEMEG;
          if (after < PMD_PAGE_SIZE)
            expectInts(
              f.proc.read(map + after, PMD_PAGE_SIZE - after),
              (i) => i + after / 4,
              `ptr from ${after}`,
            );
          f.proc.munmap(oldPtr, 2 * PMD_PAGE_SIZE);
          expectConsistent(f.system);
        }
      }
      teardown(f);
    },
  },
  {
    // TEST_F(hmm, migrate_remap_fault): a PMD-sized range moved by mremap(MREMAP_MAYMOVE |
    // MREMAP_FIXED, with and without MREMAP_DONTUNMAP) to PMD size + 0, 512 KiB or 1 MiB past its
    // start, before or after it is migrated (with MADV_HUGEPAGE or MADV_NOHUGEPAGE); the CPU then
    // faults every page back at the new address: every byte is what was written.
    name: "migrate_remap_fault",
    minimum: SINCE_5_7,
    run(context) {
      const f = setup(context);
      for (const before of [false, true]) {
        for (const dontUnmap of [false, true]) {
          for (const useThp of [false, true]) {
            for (const offset of OFFSETS) {
              const flags = MREMAP_MAYMOVE | MREMAP_FIXED | (dontUnmap ? MREMAP_DONTUNMAP : 0);
              const bufferSize = 8 * PMD_PAGE_SIZE;
              const oldPtr = f.proc.mmap(bufferSize);
              const map = align(oldPtr, PMD_PAGE_SIZE);
              f.proc.madvise(map, PMD_PAGE_SIZE, useThp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
              f.proc.munmap(map + PMD_PAGE_SIZE, 2 * PMD_PAGE_SIZE);
              f.proc.write(
                map,
                ints(PMD_NINTS, (i) => i),
              );
              expectPmdMapped(f, map, useThp);
              const target = map + PMD_PAGE_SIZE + offset;
              let ptr = map;
              if (before) ptr = f.proc.mremap(map, PMD_PAGE_SIZE, PMD_PAGE_SIZE, flags, target);
              expectInts(migrateWhole(f, ptr), (i) => i, "mirror");
              if (!before) ptr = f.proc.mremap(map, PMD_PAGE_SIZE, PMD_PAGE_SIZE, flags, target);
              expectEqual(ptr, target, "new_ptr");
              expectInts(f.proc.read(ptr, PMD_PAGE_SIZE), (i) => i, "ptr");
              f.proc.munmap(ptr, PMD_PAGE_SIZE);
              f.proc.munmap(oldPtr, bufferSize);
              expectConsistent(f.system);
            }
          }
        }
      }
      teardown(f);
    },
  },
  {
    // TEST_F_TIMEOUT(hmm, benchmark_thp_migration): for buffers of 512 KiB to 256 MiB, with
    // MADV_HUGEPAGE and with MADV_NOHUGEPAGE: map, write, one warm-up migration to the device and back,
    // then 5 timed round trips, each migration returning 0. The kernel test prints its timings and
    // asserts only the return codes; so does the port, which times nothing (bench/thp.ts does) and runs
    // in the tokens store, since nothing reads the bytes.
    name: "benchmark_thp_migration",
    run(context) {
      const f = setup(context, BENCHMARK_RAM, "tokens");
      for (const size of BENCHMARK_SIZES) {
        for (const useThp of [true, false]) {
          expectEqual(
            runMigrationBenchmark(f, useThp, size, 5),
            0,
            `run_migration_benchmark(${size}, ${useThp})`,
          );
        }
        expectConsistent(f.system);
      }
      teardown(f);
    },
  },
];

/** test_sizes[]: from a quarter of a THP to 128 THPs. */
const BENCHMARK_SIZES = [
  PMD_PAGE_SIZE / 4,
  PMD_PAGE_SIZE / 2,
  PMD_PAGE_SIZE,
  PMD_PAGE_SIZE * 2,
  PMD_PAGE_SIZE * 4,
  PMD_PAGE_SIZE * 8,
  PMD_PAGE_SIZE * 128,
] as const;

/** RAM for benchmark_thp_migration: its 256 MiB buffer and the rest of the fixture. */
const BENCHMARK_RAM = "320MiB";

/**
 * run_migration_benchmark: the buffer mapped (plain mmap, aligned by __get_unmapped_area when its size
 * is a multiple of 2 MiB), advised, written (ptr[i] = i & 0xFF), then a warm-up and `iterations` round
 * trips of hmm_migrate_sys_to_dev and hmm_migrate_dev_to_sys. Returns 0, or the first failure's -errno.
 */
function runMigrationBenchmark(f: Fixture, useThp: boolean, bufferSize: number, iterations: number): number {
  const npages = bufferSize / PAGE_SIZE;
  const ptr = f.proc.mmap(bufferSize);
  f.proc.madvise(ptr, bufferSize, useThp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  // ptr[i] = i & 0xFF, in the tokens store: every page written once.
  f.proc.fillPages(ptr, npages, 0xff);
  for (let i = 0; i <= iterations; i++) {
    // The mirror the C test reads back into holds nothing anyone checks: no read-back buffer.
    const toDevice = migrateReturn(() => f.fd.migrateToDevice(ptr, npages));
    if (toDevice !== 0) return toDevice;
    const toSystem = migrateReturn(() => f.fd.migrateToSystem(ptr, npages));
    if (toSystem !== 0) return toSystem;
  }
  // hmm_buffer_free.
  f.proc.munmap(ptr, bufferSize);
  return 0;
}

/** The ioctl's return value: 0, or the -errno of the KernelError the command threw. */
function migrateReturn(command: () => unknown): number {
  try {
    command();
    return 0;
  } catch (error) {
    if (error instanceof KernelError) return -error.errno;
    throw error;
  }
}
