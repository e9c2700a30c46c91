/**
 * The whole public surface against a plain reference (test/property/surface/): random sequences of
 * valid and hostile calls on every method (mm system calls, CPU accesses, pins, tmpfs files, device
 * files and every dmirror command, HMM_DMIRROR_EXCLUSIVE and CHECK_EXCLUSIVE among them, on test_hmm.c's
 * two device-private devices and, under modern, a device-coherent third, mmap of a device file,
 * long-term pins (FOLL_LONGTERM), descriptors inherited across fork and outliving their mm, fork,
 * exit), under the protocols 4.14 and modern, in both page stores. Every exception must
 * be a KernelError or a SignalError (or DmirrorLivelockError, exactly where lib/test_hmm.c loops for
 * ever: READ or WRITE on a file whose mm has gone), every read must match the reference, a call that
 * fails its checks must change nothing, hmmsim's VMAs must be the reference's, and checkInvariants()
 * must be empty after every call. The concurrent mode also runs groups of 2 or 3 operations as threads
 * under a seeded chooser and requires the results and the bytes to be those of some serial order.
 *
 * The properties run the corrected dmirror driver (`dmirror: { invalidateOnOwnMigration: true }`):
 * test_hmm.c's own mirror windows are shown, with the same property narrowed to each, in
 * faithful.property.test.ts. READ and WRITE on a file whose mm has gone livelock (test_hmm.c) in the
 * sequential properties and give EINVAL (`faultFailsWithoutMm`) in the concurrent ones. RAM and device
 * memory are small and fixed; a run stops early rather than let a step exhaust them (runner.ts), so the
 * OOM killer never runs (checked: kernel.stats.oomKills stays 0).
 *
 * What the reference encodes, and the kernel source behind it, is in the headers of surface/*.ts.
 *
 * Environment (all optional):
 *   HMMSIM_FUZZ_RUNS      sequences per property (default 375: 3,000 over the eight properties)
 *   HMMSIM_FUZZ_SEED      fast-check seed (default fixed, so CI is deterministic)
 *   HMMSIM_FUZZ_PATH      fast-check path, with the seed, to replay one counterexample
 *   HMMSIM_FUZZ_LENGTH    steps per sequence at most, after the prologue (default 24)
 *   HMMSIM_FUZZ_OPS       op names or groups to generate (surface/ops.ts), e.g. "device,cpu,fork",
 *                         "dev:toDevice" (one device command), "group:close" (in concurrent groups only)
 *   HMMSIM_FUZZ_HOSTILE   "0": no hostile arguments; a list of op names: only theirs
 *   HMMSIM_FUZZ_FDS       opens of a device at most (default 6; inherited descriptors do not count)
 *   HMMSIM_FUZZ_PROTOCOL  only "4.14" or only "modern"
 *   HMMSIM_FUZZ_MODE      only "sequential" or only "concurrent"
 *   HMMSIM_FUZZ_STATS     set: print how often each operation ended each way, and sequences per second
 *   HMMSIM_FUZZ_TRACE     set: print every call and its outcome (to follow a replayed counterexample)
 *
 * A failure names the step, the call, and what the reference expected; for a concurrent group also
 * its chooser seed (part of the generated steps, so the same steps replay the same interleaving) and
 * the schedule it made (thread ids at each choice, for replayChooser). Replay one with
 * HMMSIM_FUZZ_SEED and HMMSIM_FUZZ_PATH from fast-check's report.
 */
import fc from "fast-check";
import { describe, it } from "vitest";
import type { ProtocolVersion } from "../../src/mm/kernel.js";
import type { StoreKind } from "../../src/mm/page_store.js";
import { allowedOps, stepsArbitrary } from "./surface/ops.js";
import { outcomes, SurfaceRun } from "./surface/runner.js";

const env = process.env;
const RUNS = Number(env.HMMSIM_FUZZ_RUNS ?? 375);
const SEED = env.HMMSIM_FUZZ_SEED === undefined ? 0x5eed : Number(env.HMMSIM_FUZZ_SEED);
const LENGTH = Number(env.HMMSIM_FUZZ_LENGTH ?? 24);
const allowed = allowedOps(env.HMMSIM_FUZZ_OPS);
const protocols = (["4.14", "modern"] as const).filter(
  (p) => env.HMMSIM_FUZZ_PROTOCOL === undefined || env.HMMSIM_FUZZ_PROTOCOL === p,
);
const modes = (["sequential", "concurrent"] as const).filter(
  (m) => env.HMMSIM_FUZZ_MODE === undefined || env.HMMSIM_FUZZ_MODE === m,
);
const stores: readonly StoreKind[] = ["bytes", "tokens"];

function check(protocol: ProtocolVersion, store: StoreKind, concurrent: boolean): void {
  const started = performance.now();
  fc.assert(
    fc.property(stepsArbitrary({ concurrent, allowed, maxLength: LENGTH }), (steps) => {
      new SurfaceRun({
        protocol,
        store,
        // The corrected driver (test_hmm.c's own windows closed, see faithful.property.test.ts); READ
        // and WRITE on a file whose mm has gone livelock (test_hmm.c) in the sequential properties and
        // give EINVAL (the corrected dmirror_fault) in the concurrent ones.
        dmirror: { invalidateOnOwnMigration: true, faultFailsWithoutMm: concurrent },
      }).run(steps);
    }),
    {
      seed: SEED + (protocol === "modern" ? 1 : 0) + (store === "tokens" ? 2 : 0) + (concurrent ? 4 : 0),
      numRuns: RUNS,
      verbose: 0,
      ...(env.HMMSIM_FUZZ_PATH === undefined ? {} : { path: env.HMMSIM_FUZZ_PATH }),
    },
  );
  if (env.HMMSIM_FUZZ_STATS !== undefined) {
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `${protocol} ${store} ${concurrent ? "concurrent" : "sequential"}: ${RUNS} sequences in ${seconds.toFixed(1)} s (${(RUNS / seconds).toFixed(0)}/s)`,
    );
  }
}

for (const protocol of protocols) {
  for (const mode of modes) {
    describe(`the public surface against the reference [${protocol}, ${mode}]`, () => {
      for (const store of stores) {
        it(`agrees on every result, error, byte and invariant (${store} store)`, () =>
          check(protocol, store, mode === "concurrent"));
      }
    });
  }
}

if (env.HMMSIM_FUZZ_STATS !== undefined) {
  describe("statistics", () => {
    it("prints how each operation ended", () => {
      console.log(
        [...outcomes]
          .sort()
          .map(([outcome, count]) => `${outcome}: ${count}`)
          .join("\n"),
      );
    });
  });
}
