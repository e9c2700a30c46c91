// The README's library example (section "The library"), importing the installed package.
// Run it in a project that has done `npm install hmmsim`: `node library.mjs` (it prints nothing; its asserts are its checks).
import assert from "node:assert/strict";
import { HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_WRITE, System } from "hmmsim";

const system = new System({ ram: "64MiB", protocol: "modern", devices: [{ memory: "16MiB" }] });
const proc = system.spawn();
const addr = proc.mmap(16 * 4096);                 // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
proc.write(addr, new TextEncoder().encode("hello, device"));

const dev = system.device(0).open(proc);           // open("/dev/hmm_dmirror0")
assert.equal(dev.migrateToDevice(addr, 16).cpages, 16);  // HMM_DMIRROR_MIGRATE_TO_DEV
assert.equal(dev.snapshot(addr, 1)[0], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE);
// The CPU touches the page: do_swap_page calls the driver's migrate_to_ram, which brings it back.
assert.equal(new TextDecoder().decode(proc.read(addr, 13)), "hello, device");
assert.deepEqual(system.checkInvariants(), []);   // every refcount, mapcount, lock and list agrees
