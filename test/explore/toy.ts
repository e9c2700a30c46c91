/**
 * Toy scenarios for testing the explorer itself: threads of plain steps over a few shared variables,
 * whose schedule counts are known and whose final states are easy to enumerate.
 */
import type { Scenario, ScenarioSetup } from "../../src/explore/scenario.js";
import { Lock } from "../../src/sched/locks.js";
import { OBJ_NAMED } from "../../src/sched/objects.js";
import type { Kfn } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";

/** One step of a toy thread: read a variable (the value is observed), write one, or take/drop a lock. */
export type ToyOp =
  | { readonly kind: "read"; readonly variable: number }
  | { readonly kind: "write"; readonly variable: number; readonly value: number }
  /** x = x + 1 in two steps, a load and a store (a lost update when two interleave). */
  | { readonly kind: "increment"; readonly variable: number }
  /** Spin (a retry loop) until the variable holds the value. */
  | { readonly kind: "await"; readonly variable: number; readonly value: number }
  | { readonly kind: "lock"; readonly lock: number }
  | { readonly kind: "unlock"; readonly lock: number };

export interface ToyProgram {
  readonly variables: number;
  readonly locks: number;
  readonly threads: readonly (readonly ToyOp[])[];
}

/** Threads of `steps[i]` plain steps each, all touching one variable (so no two steps commute). */
export function countingProgram(steps: readonly number[]): ToyProgram {
  return {
    variables: 1,
    locks: 0,
    threads: steps.map((n, t) =>
      Array.from({ length: n - 1 }, (): ToyOp => ({ kind: "write", variable: 0, value: t + 1 })),
    ),
  };
}

export function toyScenario(program: ToyProgram, name = "toy"): Scenario {
  return {
    name,
    description: "a toy program of reads, writes and locks",
    config: { protocol: "modern", switches: {} },
    operations: program.threads.map((_, t) => ({ name: `T${t}` })),
    invariants: false,
    build(_config, keep): ScenarioSetup {
      const system = new System({ ram: "64KiB", store: "tokens", devices: [] });
      const sched = system.kernel.sched;
      const values = new Array<number>(program.variables).fill(0);
      const objects = values.map((_, v) => sched.nameObject(OBJ_NAMED, `x${v}`));
      const locks = Array.from({ length: program.locks }, (_, l) => new Lock(sched, `L${l}`));
      const threads = program.threads.flatMap((ops, op) => {
        if (!keep[op]) return [];
        const body = function* (): Kfn<string> {
          const seen: number[] = [];
          for (const step of ops) {
            if (step.kind === "lock") {
              yield* locks[step.lock]!.lock();
              continue;
            }
            if (step.kind === "unlock") {
              locks[step.lock]!.unlock();
              continue;
            }
            // The step's shared access happens after its scheduling point, as a kernel's would.
            const object = objects[step.variable]!;
            if (step.kind === "await") {
              if (sched.contended) yield sched.at(`poll x${step.variable}`, object);
              while (values[step.variable] !== step.value)
                yield sched.atRetry(`poll x${step.variable} again`, object);
              continue;
            }
            if (sched.contended) yield sched.at(`${step.kind} x${step.variable}`, object);
            if (step.kind === "read") seen.push(values[step.variable]!);
            else if (step.kind === "write") values[step.variable] = step.value;
            else {
              const loaded = values[step.variable]!;
              if (sched.contended) yield sched.at(`store x${step.variable}`, object);
              values[step.variable] = loaded + 1;
            }
          }
          return seen.join(",");
        };
        return [{ op, cpu: op % 2, body: body(), observe: (result: unknown) => String(result) }];
      });
      return { system, threads, observeFinal: () => values.join(",") };
    },
  };
}
