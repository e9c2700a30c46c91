// The library and two of its subpaths: a migration through the kernel-level API's constants
// (hmmsim/mm/...), then the concurrency explorer (hmmsim/explore) finding defect S3's deadlock.
// Type-check with `npx tsc --noEmit --strict --module NodeNext --moduleResolution NodeNext explore.ts`.
import assert from "node:assert/strict";
import { EINVAL, KernelError, type ProtocolVersion, System } from "hmmsim";
import { type ExploreResult, explore, formatExplore, scenarioOfDefect } from "hmmsim/explore";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "hmmsim/mm/mman";

const protocol: ProtocolVersion = "4.14";
const system = new System({ ram: "16MiB", protocol, devices: [{ memory: "4MiB" }] });
const proc = system.spawn();
const addr = proc.mmap(4 * 4096, { prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS });
proc.fillPages(addr, 4, 7);
const dev = system.device(0).open(proc);
assert.equal(dev.migrateToDevice(addr, 4).cpages, 4);
assert.deepEqual(proc.checkPages(addr, 4, 7), []); // every page holds what fillPages wrote
try {
  dev.migrateToDevice(addr + 1, 1); // not page-aligned
  assert.fail("an unaligned address migrated");
} catch (error) {
  assert(error instanceof KernelError && error.errno === EINVAL);
}
assert.deepEqual(system.checkInvariants(), []);

const s3 = scenarioOfDefect("S3");
assert(s3 !== null);
const result: ExploreResult = explore(s3, { defect: true, seconds: 60 });
assert.equal(result.finding?.violation.kind, "deadlock");
console.log(formatExplore(result).split("\n")[3]);
