/**
 * The strategies on toy programs whose schedule counts are known: plain depth-first search visits
 * every interleaving exactly once, the preemption bound keeps exactly those with at most k
 * preemptions, and the sleep-set reduction reaches exactly the outcomes and violations plain search
 * reaches on generated programs (dscheck's cross-check, which caught a bug in its own pruning).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { execute } from "../../src/explore/execution.js";
import { explore } from "../../src/explore/explore.js";
import type { Scenario } from "../../src/explore/scenario.js";
import { DfsStrategy, PctStrategy, RandomStrategy, type Strategy } from "../../src/explore/strategies.js";
import { countingProgram, type ToyOp, type ToyProgram, toyScenario } from "./toy.js";

interface SearchOutcome {
  executions: number;
  abandoned: number;
  /** Each judged execution's outcome, or the kind of its violation. */
  results: Set<string>;
  schedules: string[];
}

function search(scenario: Scenario, strategy: Strategy, limit = 100_000): SearchOutcome {
  const keep = scenario.operations.map(() => true);
  const out: SearchOutcome = { executions: 0, abandoned: 0, results: new Set(), schedules: [] };
  for (let n = 0; n < limit; n++) {
    const decider = strategy.next();
    if (decider === null) break;
    const result = execute(scenario, scenario.config, keep, decider, { footprints: strategy.footprints });
    strategy.done(result);
    if (result.abandoned) {
      out.abandoned++;
      continue;
    }
    out.executions++;
    out.results.add(result.violation === null ? result.outcome : `violation ${result.violation.kind}`);
    out.schedules.push(result.choices.join(""));
  }
  return out;
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return Math.round(r);
}

/** Interleavings of two threads of a and b steps with at most k preemptions (blocks - 2 of them). */
function boundedInterleavings(a: number, b: number, k: number): number {
  let total = 0;
  for (let blocksA = 1; blocksA <= a; blocksA++) {
    for (let blocksB = blocksA - 1; blocksB <= blocksA + 1; blocksB++) {
      if (blocksB < 1 || blocksB > b) continue;
      if (blocksA + blocksB - 2 > k) continue;
      const ways = binomial(a - 1, blocksA - 1) * binomial(b - 1, blocksB - 1);
      total += blocksA === blocksB ? 2 * ways : ways;
    }
  }
  return total;
}

describe("depth-first search counts", () => {
  it("visits each of the C(n+m, n) interleavings of two threads once", () => {
    for (const [n, m] of [
      [1, 1],
      [2, 3],
      [4, 4],
      [3, 6],
    ] as const) {
      const found = search(
        toyScenario(countingProgram([n, m])),
        new DfsStrategy({ preemptions: Infinity, reduction: false }),
      );
      expect(found.executions, `${n}+${m}`).toBe(binomial(n + m, n));
      expect(new Set(found.schedules).size).toBe(found.executions);
    }
  });

  it("visits the multinomial count for three threads", () => {
    const found = search(
      toyScenario(countingProgram([2, 2, 3])),
      new DfsStrategy({ preemptions: Infinity, reduction: false }),
    );
    expect(found.executions).toBe(210); // 7! / (2! 2! 3!)
  });

  it("keeps exactly the interleavings with at most k preemptions", () => {
    for (const [n, m] of [
      [3, 3],
      [4, 5],
      [6, 2],
    ] as const) {
      for (const k of [0, 1, 2, 3]) {
        const found = search(
          toyScenario(countingProgram([n, m])),
          new DfsStrategy({ preemptions: k, reduction: false }),
        );
        expect(found.executions, `${n}+${m} k=${k}`).toBe(boundedInterleavings(n, m, k));
      }
    }
  });

  it("with the reduction, runs one execution per order of the dependent steps", () => {
    // Each thread's first step touches nothing shared; its other steps all write x0.
    const found = search(toyScenario(countingProgram([3, 3])), new DfsStrategy({ preemptions: Infinity }));
    expect(found.executions).toBe(binomial(4, 2));
    // Threads on different variables commute entirely: one execution covers them all.
    const independent: ToyProgram = {
      variables: 2,
      locks: 0,
      threads: [
        [
          { kind: "write", variable: 0, value: 1 },
          { kind: "write", variable: 0, value: 2 },
        ],
        [
          { kind: "write", variable: 1, value: 3 },
          { kind: "read", variable: 1 },
        ],
      ],
    };
    expect(search(toyScenario(independent), new DfsStrategy({ preemptions: Infinity })).executions).toBe(1);
  });
});

/** Programs of 2-3 threads, each 1-2 steps (a locked step is three, a nested one five) over two variables and two properly nested locks. */
const programs: fc.Arbitrary<ToyProgram> = fc
  .array(
    fc.array(
      fc.oneof(
        fc.record({ kind: fc.constant("read" as const), variable: fc.integer({ min: 0, max: 1 }) }),
        fc.record({
          kind: fc.constant("write" as const),
          variable: fc.integer({ min: 0, max: 1 }),
          value: fc.integer({ min: 1, max: 3 }),
        }),
        fc.record({ kind: fc.constant("increment" as const), variable: fc.integer({ min: 0, max: 1 }) }),
        fc.record({
          kind: fc.constant("locked" as const),
          lock: fc.integer({ min: 0, max: 1 }),
          variable: fc.integer({ min: 0, max: 1 }),
        }),
        fc.record({ kind: fc.constant("nested" as const), first: fc.integer({ min: 0, max: 1 }) }),
      ),
      { minLength: 1, maxLength: 2 },
    ),
    { minLength: 2, maxLength: 3 },
  )
  .map((threads) => ({
    variables: 2,
    locks: 2,
    threads: threads.map((steps) =>
      steps.flatMap((step): ToyOp[] => {
        if (step.kind === "locked")
          return [
            { kind: "lock", lock: step.lock },
            { kind: "increment", variable: step.variable },
            { kind: "unlock", lock: step.lock },
          ];
        if (step.kind === "nested") {
          // Two locks in either order: threads that disagree can deadlock (ABBA).
          const second = 1 - step.first;
          return [
            { kind: "lock", lock: step.first },
            { kind: "lock", lock: second },
            { kind: "write", variable: 0, value: 9 },
            { kind: "unlock", lock: second },
            { kind: "unlock", lock: step.first },
          ];
        }
        return [step];
      }),
    ),
  }))
  // Plain search of longer programs takes too long for a unit test.
  .filter((program) => program.threads.reduce((sum, steps) => sum + steps.length, 0) <= 9);

describe("the sleep-set reduction, cross-checked against plain search", () => {
  it("reaches exactly the same outcomes and violations on generated programs", () => {
    let reducedTotal = 0;
    let plainTotal = 0;
    fc.assert(
      fc.property(programs, (program) => {
        const scenario = toyScenario(program);
        const plain = search(scenario, new DfsStrategy({ preemptions: Infinity, reduction: false }));
        const reduced = search(scenario, new DfsStrategy({ preemptions: Infinity }));
        plainTotal += plain.executions;
        reducedTotal += reduced.executions;
        expect([...reduced.results].sort()).toEqual([...plain.results].sort());
        expect(reduced.executions).toBeLessThanOrEqual(plain.executions);
      }),
      { numRuns: 40, seed: 9 },
    );
    // The reduction must actually prune, or the cross-check proves nothing.
    expect(reducedTotal).toBeLessThan(plainTotal / 2);
  });

  it("under a preemption bound finds only what plain search finds, and every violation of bound 2", () => {
    fc.assert(
      fc.property(programs, (program) => {
        const scenario = toyScenario(program);
        const plain = search(scenario, new DfsStrategy({ preemptions: 2, reduction: false }));
        const reduced = search(scenario, new DfsStrategy({ preemptions: 2 }));
        const unbounded = search(scenario, new DfsStrategy({ preemptions: Infinity, reduction: false }));
        for (const result of reduced.results) expect(unbounded.results).toContain(result);
        const violations = (found: SearchOutcome) =>
          [...found.results].filter((r) => r.startsWith("violation")).sort();
        expect(violations(reduced)).toEqual(violations(plain));
      }),
      { numRuns: 30, seed: 11 },
    );
  });
});

describe("PCT and random", () => {
  const lostUpdate: ToyProgram = {
    variables: 1,
    locks: 0,
    threads: [[{ kind: "increment", variable: 0 }], [{ kind: "increment", variable: 0 }]],
  };

  it("replay from their seed", () => {
    for (const make of [() => new PctStrategy(7, 3, 40), () => new RandomStrategy(7, 40)]) {
      const first = search(toyScenario(countingProgram([4, 4, 2])), make());
      const again = search(toyScenario(countingProgram([4, 4, 2])), make());
      expect(again.schedules).toEqual(first.schedules);
      expect(new Set(first.schedules).size).toBeGreaterThan(5);
    }
  });

  it("find a lost update, as depth-first search does with one preemption", () => {
    for (const strategy of ["dfs", "pct", "random"] as const) {
      const result = explore(toyScenario(lostUpdate), { strategy, seed: 3, executions: 2000 });
      expect(result.finding?.violation.kind, strategy).toBe("data");
      expect(result.finding?.preemptions, strategy).toBe(1);
    }
  });
});
