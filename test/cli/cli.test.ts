import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runDemo } from "../../src/cli/demo.js";

const root = resolve(import.meta.dirname, "../..");
/** The command users run (`npx hmmsim`): the wrapper, which starts node on src/cli/main.ts. */
const bin = resolve(root, "bin/hmmsim.js");
const env = { ...process.env, NO_COLOR: "1" };
/** What `npm start` and `npm run hmmsim` run instead: tsx's own command on the sources. */
const tsxCli = createRequire(import.meta.url).resolve("tsx/cli");

function hmmsim(...args: string[]) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8", env });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

const INTERRUPTED = "hmmsim: interrupted\n";

describe("hmmsim demo", () => {
  for (const protocol of ["modern", "4.14"] as const) {
    for (const store of ["bytes", "tokens"] as const) {
      it(`moves the buffer there and back with its data under ${protocol}, ${store} store`, () => {
        const report = runDemo({ protocol, pages: 64, store });
        expect(report.migratedToDevice).toBe(64);
        expect(report.cpuFaults).toBe(32);
        expect(report.migratedToSystem).toBe(32);
        expect(report.deviceReadIntact).toBe(true);
        expect(report.dataIntact).toBe(true);
        expect(report.invariants).toBe("ok");
        expect(report.checksHeld).toBe(true);
        expect(report.knownDefect).toBeNull();
        expect(report.phases.every((phase) => phase.error === null)).toBe(true);
      });
    }
  }

  it("under seed moves nothing, reports the ENOENT, keeps the data and finds the leaked references", () => {
    const report = runDemo({ protocol: "seed", pages: 16, store: "bytes" });
    expect(report.migratedToDevice).toBe(0);
    expect(report.phases.find((phase) => phase.name === "migrate to device")?.error).toBe("ENOENT");
    expect(report.dataIntact).toBe(true);
    expect(report.invariants).not.toBe("ok");
    // One leaked reference per migration attempt: the first half saw one (to device), the second half
    // two (to device, then MIGRATE_TO_SYS, which the seed's collect cannot tell from a system page).
    expect(report.invariants).toContain("pfn 1: 1 reference(s) still held with no thread running (leaked)");
    expect(report.invariants).toContain("pfn 16: 2 reference(s) still held with no thread running (leaked)");
    expect(report.phases.find((phase) => phase.name === "migrate to device")).toMatchObject({
      collected: 16,
      moved: 0,
      restored: 16,
    });
    // The leaks are the seed's known defect, and still a failed check.
    expect(report.checksHeld).toBe(false);
    expect(report.knownDefect).toContain("migrate_vma_prepare() never drops the reference");
  });

  it("prints one JSON document with the documented fields and exits 0 when the checks hold", () => {
    const { status, stdout, stderr } = hmmsim("demo", "--pages", "32", "--json");
    expect(stderr).toBe("");
    expect(status).toBe(0);
    const report = JSON.parse(stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      protocol: "modern",
      pages: 32,
      migratedToDevice: 32,
      migratedToSystem: 16,
      cpuFaults: 16,
      dataIntact: true,
      invariants: "ok",
      checksHeld: true,
      knownDefect: null,
    });
  });

  it("under seed says the violations are its known defect and exits 1: they are still violations", () => {
    const { status, stdout, stderr } = hmmsim("demo", "--protocol", "seed", "--pages", "4");
    expect(stderr).toBe("");
    expect(status).toBe(1);
    expect(stdout).toContain("invariants           4 violation(s):");
    expect(stdout).toContain("checks               FAILED (exit status 1)");
    expect(stdout).toContain("The violations are the seed protocol's known defect: migrate_vma_prepare()");
    expect(stdout).toContain("They are still violations.");
  });

  it("refuses a bad argument with one line naming it and exit status 2", () => {
    for (const args of [
      ["demo", "--pages", "abc"],
      ["demo", "--protocol", "5.0"],
      ["demo", "--store", "disk"],
      ["demo", "--pages", "300000"],
      ["frobnicate"],
    ]) {
      const { status, stdout, stderr } = hmmsim(...args);
      expect(status, args.join(" ")).toBe(2);
      expect(stdout).toBe("");
      expect(stderr.trim().split("\n")).toHaveLength(1);
      expect(stderr).toMatch(/^error: /);
    }
  });
});

describe("hmmsim's output errors", () => {
  it("stops quietly when the reader of its pipe has gone (EPIPE), exiting with the checks' status", () => {
    // The subshell writes until its pipe fails, so the reader (`:`) has certainly exited and closed
    // it when hmmsim starts: hmmsim's write of the report gets EPIPE. Its status comes out on fd 3.
    for (const [protocol, expected] of [
      ["modern", "0"],
      ["seed", "1"],
    ] as const) {
      const script =
        '{ (trap "" PIPE; while printf x 2>/dev/null; do :; done; "$0" "$1" demo --pages 4 --protocol "$2"; ' +
        'echo "$?" >&3) | :; } 3>&1';
      const result = spawnSync("sh", ["-c", script, process.execPath, bin, protocol], {
        cwd: root,
        encoding: "utf8",
        env,
      });
      expect(result.stderr).toBe("");
      expect(result.stdout.trim()).toBe(expected);
    }
  });

  it.skipIf(!existsSync("/dev/full"))(
    "says in one line what it failed to write and where when stdout is full (ENOSPC), exit status 3",
    () => {
      for (const [args, what] of [
        [["demo", "--pages", "4"], "the report"],
        [["--help"], "the help"],
      ] as const) {
        const full = openSync("/dev/full", "w");
        try {
          const result = spawnSync(process.execPath, [bin, ...args], {
            cwd: root,
            encoding: "utf8",
            env,
            stdio: ["ignore", full, "pipe"],
          });
          expect(result.stderr).toBe(`hmmsim: writing ${what} to stdout: no space left on device (ENOSPC)\n`);
          expect(result.status).toBe(3);
        } finally {
          closeSync(full);
        }
      }
    },
  );
});

describe("hmmsim interrupted", () => {
  let running: ChildProcess | null = null;
  afterEach(() => {
    // A test that failed leaves no long run behind.
    if (running?.pid !== undefined && running.exitCode === null && running.signalCode === null) {
      try {
        process.kill(-running.pid, "SIGKILL");
      } catch {
        // The group has already gone.
      }
    }
    running = null;
  });

  /**
   * Starts a long run (seconds of model time) in its own process group, as a shell starts a job, and
   * sends `signal` to the group or to the first process alone (the wrapper, or tsx's command) once
   * the model is running (its first phase has been reported).
   */
  async function interruptLongRun(
    signal: NodeJS.Signals,
    target: "group" | "wrapper",
    via: "bin" | "tsx" = "bin",
  ) {
    const entry = via === "bin" ? [bin] : [tsxCli, resolve(root, "src/cli/main.ts")];
    const child = spawn(process.execPath, [...entry, "demo", "--pages", "4194304", "--store", "tokens"], {
      cwd: root,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    running = child;
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    const ended = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.on("close", (status, endedBy) => done({ status, signal: endedBy })),
    );
    await new Promise<void>((started) => {
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk;
        if (stderr.includes("hmmsim demo: phase 1 of 6: fill\n")) started();
      });
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error("the long run did not start");
    if (target === "group") process.kill(-pid, signal);
    else child.kill(signal);
    return { ...(await ended), stdout, stderr: () => stderr };
  }

  for (const target of ["group", "wrapper"] as const) {
    it(`says so once and exits 130 when SIGINT reaches the ${target === "group" ? "process group (^C)" : "wrapper alone"}`, async () => {
      const result = await interruptLongRun("SIGINT", target);
      expect(result.signal).toBeNull();
      expect(result.status).toBe(130);
      expect(result.stdout).toBe("");
      expect(result.stderr()).toBe(`hmmsim demo: phase 1 of 6: fill\n${INTERRUPTED}`);
    });
  }

  it("says so once and exits 130 when run through tsx (npm start), whose relay kills a child that is slow to answer", async () => {
    // tsx's command forwards SIGINT and SIGKILLs a child that has not acknowledged it within some
    // 60 ms: only a main thread left idle (the model in its worker) answers in time and says so.
    const result = await interruptLongRun("SIGINT", "group", "tsx");
    expect(result.status).toBe(130);
    expect(result.stdout).toBe("");
    expect(result.stderr()).toBe(`hmmsim demo: phase 1 of 6: fill\n${INTERRUPTED}`);
  });

  it("dies of SIGTERM as the run did, without a word", async () => {
    const result = await interruptLongRun("SIGTERM", "group");
    expect(result.signal).toBe("SIGTERM");
    expect(result.stdout).toBe("");
    expect(result.stderr()).not.toContain(INTERRUPTED);
  });
});

describe("hmmsim", () => {
  it("--version prints the package version and --help lists the commands and the exit statuses", () => {
    expect(hmmsim("--version").stdout.trim()).toBe("0.1.0");
    const { status, stdout: help } = hmmsim("--help");
    expect(status).toBe(0);
    expect(help).toContain("demo");
    expect(help).toContain("conformance");
    const exitStatus = help.slice(help.indexOf("Exit status:"));
    for (const line of [
      /^ {2}0 {4}the run finished and its checks held/m,
      /^ {2}1 {4}a check failed/m,
      /^ {2}2 {4}bad usage/m,
      /^ {2}3 {4}the report could not be written/m,
      /^ {2}4 {4}hmmsim itself failed/m,
      /^ {2}130 {2}interrupted \(SIGINT\)/m,
    ]) {
      expect(exitStatus).toMatch(line);
    }
    const words = exitStatus.replace(/\s+/g, " ");
    expect(words).toContain("demo --protocol seed always ends here");
    expect(words).toContain("known defect");
    expect(words).toContain("they are still violations");
    // Each command's help lists them too.
    expect(hmmsim("demo", "--help").stdout).toContain(exitStatus);
  });

  it("conformance --json reports each port under 4.14 and modern in both variants, none failing, exit status 0", () => {
    const { status, stdout } = hmmsim("conformance", "--json");
    expect(status).toBe(0);
    const { tests, unported } = JSON.parse(stdout) as {
      tests: {
        name: string;
        protocol: string;
        variant: string;
        status: string;
        passed: boolean;
        reason?: string;
      }[];
      unported: string[];
    };
    const names = new Set(tests.map((test) => test.name));
    expect(names.size + unported.length).toBe(38);
    // Every port runs in both variants under modern; under 4.14 only those whose features 4.14 had.
    for (const name of names) {
      const runs = tests
        .filter((test) => test.name === name)
        .map((test) => `${test.protocol}/${test.variant}`);
      expect(runs).toEqual(expect.arrayContaining(["modern/private", "modern/coherent"]));
      expect([2, 4]).toContain(runs.length);
    }
    expect(tests.filter((test) => test.status === "failed")).toEqual([]);
    for (const test of tests) expect(test.passed).toBe(test.status === "passed");
    // What the kernel itself would skip, with its reason: the coherent devices under 4.14 and the
    // gup_test module 4.14 did not have.
    for (const test of tests.filter((t) => t.status === "skipped"))
      expect(
        (test.protocol === "4.14" &&
          test.variant === "coherent" &&
          test.reason === "DEVICE_COHERENT not available") ||
          (test.protocol === "4.14" &&
            test.name === "hmm_gup_test" &&
            test.reason === "Skipping test, could not find gup_test driver"),
      ).toBe(true);
    for (const variant of ["private", "coherent"])
      expect(
        tests.filter((t) => t.protocol === "modern" && t.variant === variant && t.status === "passed").length,
      ).toBe(names.size);
  });
});
