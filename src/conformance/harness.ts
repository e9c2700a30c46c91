/**
 * The harness of the hmm-tests ports (tools/testing/selftests/mm/hmm-tests.c): its fixtures, variants,
 * SKIP and the assertions the ports make. It imports nothing from Node or vitest, so `hmmsim
 * conformance`, the test suite and a browser page run the same ports.
 *
 * Like kselftest_harness.h, every TEST_F runs once per FIXTURE_VARIANT: `hmm_device_private` opens
 * device 0 (FIXTURE hmm2: devices 0 and 1), `hmm_device_coherent` device 2 (hmm2: 2 and 3). The
 * coherent devices exist when test_hmm.c is loaded with spm_addr_dev0/1; otherwise FIXTURE_SETUP
 * SKIPs with "DEVICE_COHERENT not available". hmmsim's coherent systems have all four devices
 * (testHmmDevices) under "modern"; under "4.14", which predates MEMORY_DEVICE_COHERENT (6.0), the
 * coherent variant SKIPs with the kernel's reason.
 */
import { KernelError } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import type { DeviceFile } from "../device.js";
import type { ProtocolVersion } from "../mm/kernel.js";
import type { StoreKind } from "../mm/page_store.js";
import type { Process } from "../process.js";
import { System, testHmmDevices } from "../system.js";

/** The FIXTURE_VARIANTs of hmm-tests.c. */
export type Variant = "private" | "coherent";

export const VARIANTS: readonly Variant[] = ["private", "coherent"];

/** What a port runs with: the protocol version and the fixture variant. */
export interface TestContext {
  readonly protocol: ProtocolVersion;
  readonly variant: Variant;
}

export interface HmmTest {
  /** The kernel test's name (TEST_F(hmm, name) or TEST_F(hmm2, name)). */
  readonly name: string;
  /**
   * The oldest protocol whose kernel has what the test exercises, and why; absent for a test that
   * applies to "4.14" too. A test runs only under the protocols it applies to.
   */
  readonly minimum?: { readonly protocol: "modern"; readonly why: string };
  run(context: TestContext): void;
}

/** Whether `test` applies to a kernel of `protocol` (a feature it exercises exists there). */
export function appliesTo(test: HmmTest, protocol: ProtocolVersion): boolean {
  return test.minimum === undefined || protocol === "modern";
}

/** A failed ASSERT_* or EXPECT_*: the port stops there, as the C test does. */
export class AssertionFailure extends Error {
  override name = "AssertionFailure";
}

/** SKIP(return, reason): the test did not run; `reason` is the kernel's own words. */
export class TestSkipped extends Error {
  override name = "TestSkipped";
}

/** The reason FIXTURE_SETUP gives when the coherent devices cannot be opened. */
export const COHERENT_UNAVAILABLE = "DEVICE_COHERENT not available";

/** hmm_is_coherent_type. */
export function isCoherent(context: TestContext): boolean {
  return context.variant === "coherent";
}

/** FIXTURE(hmm): a system, a process and the variant's first device opened by it. */
export interface Fixture {
  readonly system: System;
  readonly proc: Process;
  readonly fd: DeviceFile;
}

/** FIXTURE(hmm2): the variant's two devices opened by one process. */
export interface Fixture2 {
  readonly system: System;
  readonly proc: Process;
  readonly fd0: DeviceFile;
  readonly fd1: DeviceFile;
}

/**
 * The huge pages reserved for the run (nr_hugepages), as tools/testing/selftests/mm/run_vmtests.sh
 * reserves them before the mm selftests run: anon_write_hugetlbfs and compound map one each.
 */
const HUGEPAGES = 2;

/** The RAM of a test's system unless it asks for more (setup's `ram`). */
const RAM = "64MiB";

/** The system a variant runs on: two private devices, or test_hmm.c's four when coherent. */
function systemFor(context: TestContext, ram: string, store: StoreKind): System {
  if (isCoherent(context)) {
    if (context.protocol !== "modern") throw new TestSkipped(COHERENT_UNAVAILABLE);
    return new System({
      ram,
      protocol: context.protocol,
      store,
      devices: testHmmDevices(),
      hugepages: HUGEPAGES,
    });
  }
  return new System({ ram, protocol: context.protocol, store, hugepages: HUGEPAGES });
}

/** The minor of the variant's first device (device_number, device_number0). */
export function firstMinor(context: TestContext): number {
  return isCoherent(context) ? 2 : 0;
}

/**
 * FIXTURE_SETUP(hmm), on a system of `ram` in the bytes store, or the tokens store for a port that
 * checks no bytes (benchmark_thp_migration, whose 256 MiB would cost seconds to copy for nothing).
 */
export function setup(context: TestContext, ram = RAM, store: StoreKind = "bytes"): Fixture {
  const system = systemFor(context, ram, store);
  const proc = system.spawn();
  const fd = system.device(firstMinor(context)).open(proc);
  return { system, proc, fd };
}

/** FIXTURE_SETUP(hmm2). */
export function setup2(context: TestContext): Fixture2 {
  const system = systemFor(context, RAM, "bytes");
  const proc = system.spawn();
  const minor = firstMinor(context);
  const fd0 = system.device(minor).open(proc);
  const fd1 = system.device(minor + 1).open(proc);
  return { system, proc, fd0, fd1 };
}

/** FIXTURE_TEARDOWN: close(fd) must succeed; then the whole model state must be consistent. */
export function teardown(f: Fixture): void {
  f.fd.close();
  expectConsistent(f.system);
}

/** FIXTURE_TEARDOWN(hmm2). */
export function teardown2(f: Fixture2): void {
  f.fd0.close();
  f.fd1.close();
  expectConsistent(f.system);
}

/** System.checkInvariants() is empty: hmmsim's own check after every port. */
export function expectConsistent(system: System): void {
  const report = system.checkInvariants();
  if (report.length > 0) throw new AssertionFailure(`invariants: ${report.slice(0, 5).join("; ")}`);
}

/** ASSERT_EQ. */
export function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (!Object.is(actual, expected))
    throw new AssertionFailure(`${what}: got ${String(actual)}, expected ${String(expected)}`);
}

/** ASSERT_TRUE. */
export function expectTrue(condition: boolean, what: string): void {
  if (!condition) throw new AssertionFailure(what);
}

/**
 * The errno of the KernelError a call throws (the C helper's -errno); a call that succeeds fails the
 * test. Any other exception passes through.
 */
export function errnoOf(body: () => unknown): number {
  try {
    body();
  } catch (error) {
    if (error instanceof KernelError) return error.errno;
    throw error;
  }
  throw new AssertionFailure("the call succeeded, expected it to fail with an errno");
}

/** ASSERT_EQ(ret, -errno) for a call that must fail. */
export function expectErrno(body: () => unknown, errno: number, what: string): void {
  expectEqual(errnoOf(body), errno, `${what}: errno`);
}

/** An int buffer of `count` ints with ptr[i] = value(i), as bytes. */
export function ints(count: number, value: (i: number) => number): Uint8Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = value(i);
  return new Uint8Array(out.buffer);
}

/** The bytes as ints (the C tests read through `int *`). */
export function asInts(bytes: Uint8Array): Int32Array {
  const copy = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Int32Array(copy.buffer, copy.byteOffset, copy.byteLength >> 2);
}

/** ASSERT_EQ(ptr[i], expected(i)) for i from `from`, reporting the first index that differs. */
export function expectInts(bytes: Uint8Array, expected: (i: number) => number, what: string, from = 0): void {
  const view = asInts(bytes);
  for (let i = from; i < view.length; i++) {
    if (view[i] !== expected(i))
      throw new AssertionFailure(`${what}: [${i}] is ${view[i]}, expected ${expected(i)}`);
  }
}

/** One port's outcome under one protocol and variant. */
export interface TestOutcome {
  readonly name: string;
  readonly protocol: ProtocolVersion;
  readonly variant: Variant;
  readonly status: "passed" | "failed" | "skipped";
  /** Why it failed or was skipped. */
  readonly reason?: string;
}

/** Runs one port; every exception but a skip is a failure, named by its first line. */
export function runTest(test: HmmTest, context: TestContext): TestOutcome {
  const base = { name: test.name, protocol: context.protocol, variant: context.variant };
  try {
    test.run(context);
    return { ...base, status: "passed" };
  } catch (error) {
    if (error instanceof TestSkipped) return { ...base, status: "skipped", reason: error.message };
    const message = error instanceof Error ? `${error.name}: ${error.message.split("\n")[0]}` : String(error);
    return { ...base, status: "failed", reason: message };
  }
}

/** HMM_BUFFER_SIZE (1024 << 12) and npages = ALIGN(HMM_BUFFER_SIZE, page_size) >> page_shift. */
export const HMM_BUFFER_SIZE = 1024 << 12;
export const NPAGES = Math.ceil(HMM_BUFFER_SIZE / PAGE_SIZE);
export const SIZE = NPAGES * PAGE_SIZE;
/** NTIMES in hmm-tests.c. */
export const NTIMES = 10;
/** Ints per buffer: the C tests index `int *ptr` over size / sizeof(int). */
export const NINTS = SIZE / 4;
/** read_pmd_pagesize(): 2 MiB on x86-64. */
export const PMD_SIZE = 2 * 1024 * 1024;
export const ONEKB = 1024;
export const ONEMEG = 1024 * 1024;

/** ALIGN(x, a) for a power of two a. */
export function align(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}
