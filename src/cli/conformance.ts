/**
 * `hmmsim conformance`: the hmm-tests ports (src/conformance), each under every protocol that should
 * pass them and in both fixture variants, as a self-check. A test the kernel would SKIP (the coherent
 * variant under 4.14, which predates device-coherent memory) is reported as skipped with the kernel's
 * reason; the run's checks hold when nothing failed.
 */
import type { Variant } from "../conformance/harness.js";
import type { ProtocolVersion } from "../mm/kernel.js";

export interface ConformanceResult {
  name: string;
  protocol: ProtocolVersion;
  variant: Variant;
  status: "passed" | "failed" | "skipped";
  /** status === "passed", for readers of the older document. */
  passed: boolean;
  /** Why it failed or was skipped; absent when it passed. */
  reason?: string;
}

export interface ConformanceReport {
  tests: ConformanceResult[];
  /** The kernel tests with no port yet, by name. */
  unported: readonly string[];
}

export const CONFORMANCE_PROTOCOLS: readonly ProtocolVersion[] = ["4.14", "modern"];

export async function runConformance(): Promise<ConformanceReport> {
  // Loaded on demand so that the demo does not pay for the test ports.
  const { appliesTo, runTest, VARIANTS } = await import("../conformance/harness.js");
  const { hmmTests, unportedTests } = await import("../conformance/hmm_tests.js");
  const tests: ConformanceResult[] = [];
  for (const protocol of CONFORMANCE_PROTOCOLS) {
    for (const variant of VARIANTS) {
      for (const test of hmmTests) {
        if (!appliesTo(test, protocol)) continue;
        const outcome = runTest(test, { protocol, variant });
        tests.push({ ...outcome, passed: outcome.status === "passed" });
      }
    }
  }
  return { tests, unported: unportedTests };
}

/** Whether the run's checks held: no port failed (skips are the kernel's own). */
export function conformanceHeld(report: ConformanceReport): boolean {
  return report.tests.every((result) => result.status !== "failed");
}

export function formatConformance(report: ConformanceReport): string {
  const mark = { passed: "pass", failed: "FAIL", skipped: "skip" } as const;
  const lines = report.tests.map(
    (r) =>
      `${mark[r.status]}  ${r.protocol.padEnd(6)}  ${r.variant.padEnd(8)}  ${r.name}${r.reason === undefined ? "" : `: ${r.reason}`}`,
  );
  const count = (status: ConformanceResult["status"]) =>
    report.tests.filter((r) => r.status === status).length;
  lines.push("", `${count("passed")} passed, ${count("failed")} failed, ${count("skipped")} skipped`);
  if (report.unported.length > 0)
    lines.push(`not ported yet (${report.unported.length} of 38): ${report.unported.join(", ")}`);
  return lines.join("\n");
}
