/**
 * The explorer end to end on toy programs: each oracle names its violation, a failure shrinks to
 * the fewest preemptions and operations, and its schedule string replays it.
 */
import { describe, expect, it } from "vitest";
import { explore, replayFinding } from "../../src/explore/explore.js";
import { formatExplore } from "../../src/explore/report.js";
import { formatSchedule, parseSchedule, ScheduleSyntaxError } from "../../src/explore/schedule.js";
import { type ToyProgram, toyScenario } from "./toy.js";

const abba: ToyProgram = {
  variables: 1,
  locks: 2,
  threads: [
    [
      { kind: "write", variable: 0, value: 1 },
      { kind: "lock", lock: 0 },
      { kind: "lock", lock: 1 },
      { kind: "unlock", lock: 1 },
      { kind: "unlock", lock: 0 },
    ],
    [
      { kind: "lock", lock: 1 },
      { kind: "lock", lock: 0 },
      { kind: "unlock", lock: 0 },
      { kind: "unlock", lock: 1 },
    ],
    // Irrelevant to the deadlock: the shrinker drops it.
    [
      { kind: "write", variable: 0, value: 2 },
      { kind: "read", variable: 0 },
    ],
  ],
};

describe("explore", () => {
  it("finds an ABBA deadlock with one preemption, drops the bystander, and replays it", () => {
    const scenario = toyScenario(abba, "abba");
    const result = explore(scenario);
    const finding = result.finding!;
    expect(finding.violation.kind).toBe("deadlock");
    expect(finding.violation.message).toContain("waits on L1 held by thread");
    expect(finding.preemptions).toBe(1);
    expect(finding.keep).toEqual([true, true, false]);
    const parsed = parseSchedule(finding.schedule, () => 3);
    expect(parsed.keep).toEqual([true, true, false]);
    const again = replayFinding(scenario, parsed.config, parsed.keep, parsed.deviations)!;
    expect(again.violation).toEqual(finding.violation);
    expect(again.schedule).toBe(finding.schedule);
    expect(formatExplore(result)).toContain(`--replay '${finding.schedule}'`);
  });

  it("calls threads that spin waiting for each other a livelock, and prints the cycle", () => {
    const spinning: ToyProgram = {
      variables: 2,
      locks: 0,
      threads: [
        [
          { kind: "await", variable: 0, value: 1 },
          { kind: "write", variable: 1, value: 1 },
        ],
        [
          { kind: "await", variable: 1, value: 1 },
          { kind: "write", variable: 0, value: 1 },
        ],
      ],
    };
    const finding = explore(toyScenario(spinning), { livelockSteps: 100 }).finding!;
    expect(finding.violation.kind).toBe("livelock");
    // Shrunk to one thread: alone, it spins for a flag nobody will set.
    expect(finding.keep.filter((on) => on)).toHaveLength(1);
    expect(finding.violation.message).toMatch(
      /a fair scheduler can repeat these 1 steps for ever\n {2}T[01]: poll x[01] again$/,
    );
  });

  it("lets a spinning thread wait for another fairly: no livelock, space exhausted", () => {
    const handshake: ToyProgram = {
      variables: 1,
      locks: 0,
      threads: [
        [
          { kind: "await", variable: 0, value: 1 },
          { kind: "read", variable: 0 },
        ],
        [{ kind: "write", variable: 0, value: 1 }],
      ],
    };
    const result = explore(toyScenario(handshake), { livelockSteps: 100 });
    expect(result.finding).toBeNull();
    expect(result.complete).toBe(true);
  });

  it("stops at its budget without claiming completeness", () => {
    const result = explore(toyScenario(abba), { strategy: "random", executions: 1, seed: 1 });
    expect(result.executions + result.abandoned).toBe(1);
    expect(result.complete).toBe(false);
  });
});

describe("schedule strings", () => {
  const schedule = {
    scenario: "S3",
    config: {
      protocol: "4.14" as const,
      switches: { "migrate.prepareTrylock": false, "migrate.collectNotifier": "none" },
    },
    keep: [true, false, true, true, true],
    deviations: [
      [4, 1],
      [40, 0],
      [41, 2],
    ] as const,
  };

  it("round-trip, short and stable", () => {
    const text = formatSchedule(schedule);
    expect(text).toBe(
      "hs1/S3/4.14/migrate.collectNotifier=none,migrate.prepareTrylock=0/ops=1d/4.1,10.0,1.2",
    );
    expect(parseSchedule(text, () => 5)).toEqual({
      ...schedule,
      deviations: schedule.deviations.map((d) => [...d]),
    });
  });

  it("refuse what is not a schedule, saying what", () => {
    const bad: [string, RegExp][] = [
      ["hs2/S3/modern/-/ops=*/-", /start with "hs1\/"/],
      ["hs1/S3/modern/-/ops=*", /6 fields/],
      ["hs1/S3/v9/-/ops=*/-", /unknown protocol "v9"/],
      ["hs1/S3/modern/bogus=1/ops=*/-", /bad switch "bogus=1"/],
      ["hs1/S3/modern/-/ops=zz/-", /bad operation mask/],
      ["hs1/S3/modern/-/ops=0/-", /does not fit/],
      ["hs1/S3/modern/-/ops=*/4-1", /bad choice "4-1"/],
      ["hs1/nope/modern/-/ops=*/-", /no scenario named "nope"/],
    ];
    for (const [text, message] of bad) {
      expect(() => parseSchedule(text, (name) => (name === "S3" ? 5 : null)), text).toThrow(
        ScheduleSyntaxError,
      );
      expect(() => parseSchedule(text, (name) => (name === "S3" ? 5 : null)), text).toThrow(message);
    }
  });
});
