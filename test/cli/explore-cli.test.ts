/** `hmmsim explore` as users run it: the documented JSON, exit statuses and one-line refusals. */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");
const bin = resolve(root, "bin/hmmsim.js");

function hmmsim(...args: string[]) {
  const result = spawnSync(process.execPath, [bin, "explore", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("hmmsim explore", () => {
  it("--list --json names every scenario with its description", () => {
    const run = hmmsim("--list", "--json");
    expect(run.status).toBe(0);
    const { scenarios } = JSON.parse(run.stdout) as {
      scenarios: { name: string; description: string; defect?: string }[];
    };
    expect(scenarios.map((s) => s.name)).toContain("migrate-vs-cpu");
    for (const s of scenarios) expect(s.description.length).toBeGreaterThan(10);
  });

  it("--scenario NAME --json: the documented document, nothing found, the bounded space exhausted, exit 0", () => {
    const run = hmmsim("--scenario", "migrate-vs-cpu", "--json", "--workers", "2");
    expect(run.status).toBe(0);
    const doc = JSON.parse(run.stdout) as Record<string, unknown>;
    for (const key of [
      "scenario",
      "protocol",
      "strategy",
      "found",
      "violation",
      "schedule",
      "choicePoints",
      "preemptions",
      "executions",
      "complete",
      "seconds",
    ])
      expect(doc, key).toHaveProperty(key);
    expect(doc).toMatchObject({
      scenario: "migrate-vs-cpu",
      protocol: "modern",
      strategy: "dfs",
      found: false,
      violation: null,
      schedule: null,
      complete: true,
    });
    expect(doc.executions as number).toBeGreaterThan(50);
  });

  it("refuses bad input with one line and status 2", () => {
    for (const args of [
      ["--replay", "hs1/nope/modern/-/ops=*/-"],
      ["--replay", "garbage"],
      ["--defect", "S99"],
      ["--fixed"],
      ["--scenario", "/nonexistent/scenario.ts"],
      ["--strategy", "bfs", "--scenario", "migrate-vs-cpu"],
      ["--preemptions", "-1", "--scenario", "migrate-vs-cpu"],
      [],
    ]) {
      const run = hmmsim(...args);
      expect(run.status, args.join(" ")).toBe(2);
      expect(run.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(run.stdout).toBe("");
    }
  });
});
