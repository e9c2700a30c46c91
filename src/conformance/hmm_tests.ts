/**
 * The kernel's own HMM test suite (tools/testing/selftests/mm/hmm-tests.c), ported test by test onto
 * hmmsim's dmirror, in the kernel file's order. Each port keeps the kernel test's name, builds its own
 * System for the protocol and fixture variant it is given, makes the C test's assertions, and ends by
 * asserting that the whole model state is consistent (System.checkInvariants() is empty).
 */
import { anonTests } from "./anon.js";
import { exclusiveTests } from "./exclusive.js";
import { gupTests } from "./gup.js";
import type { HmmTest } from "./harness.js";
import { migrateTests } from "./migrate.js";
import { snapshotTests } from "./snapshot.js";
import { thpTests } from "./thp.js";

/** Every TEST_F of today's hmm-tests.c, in file order. */
export const KERNEL_TEST_NAMES: readonly string[] = [
  "open_close",
  "anon_read",
  "anon_read_prot",
  "anon_write",
  "anon_write_prot",
  "anon_write_child",
  "anon_write_child_shared",
  "anon_write_huge",
  "anon_write_hugetlbfs",
  "file_read",
  "file_write",
  "migrate",
  "migrate_file_private",
  "migrate_fault",
  "migrate_release",
  "migrate_shared",
  "migrate_mixed",
  "migrate_multiple",
  "anon_read_multiple",
  "anon_teardown",
  "mixedmap",
  "snapshot",
  "compound",
  "double_map",
  "exclusive",
  "exclusive_mprotect",
  "exclusive_cow",
  "hmm_gup_test",
  "hmm_cow_in_device",
  "migrate_anon_huge_empty",
  "migrate_anon_huge_zero",
  "migrate_anon_huge_free",
  "migrate_anon_huge_fault",
  "migrate_partial_unmap_fault",
  "migrate_remap_fault",
  "migrate_anon_huge_err",
  "migrate_anon_huge_zero_err",
  "benchmark_thp_migration",
];

const ported = new Map<string, HmmTest>(
  [...anonTests, ...migrateTests, ...snapshotTests, ...exclusiveTests, ...gupTests, ...thpTests].map(
    (test) => [test.name, test],
  ),
);

/** The ports, in the kernel file's order. */
export const hmmTests: readonly HmmTest[] = KERNEL_TEST_NAMES.flatMap((name) => {
  const test = ported.get(name);
  return test === undefined ? [] : [test];
});

/** The kernel tests without a port yet. */
export const unportedTests: readonly string[] = KERNEL_TEST_NAMES.filter((name) => !ported.has(name));
