/** `hmmsim conformance`: the hmm-tests ports, run as a self-check under each protocol that should pass them. */
import type { ProtocolVersion } from "../mm/kernel.js";

export interface ConformanceResult {
  name: string;
  protocol: ProtocolVersion;
  passed: boolean;
  /** Why it failed; absent when it passed. */
  error?: string;
}

export const CONFORMANCE_PROTOCOLS: readonly ProtocolVersion[] = ["4.14", "modern"];

export async function runConformance(): Promise<ConformanceResult[]> {
  // Loaded on demand so that the demo does not pay for the test ports.
  const { hmmTests } = await import("../conformance/hmm_tests.js");
  const results: ConformanceResult[] = [];
  for (const protocol of CONFORMANCE_PROTOCOLS) {
    for (const test of hmmTests) {
      try {
        test.run(protocol);
        results.push({ name: test.name, protocol, passed: true });
      } catch (error) {
        const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
        results.push({ name: test.name, protocol, passed: false, error: message });
      }
    }
  }
  return results;
}

export function formatConformance(results: readonly ConformanceResult[]): string {
  const lines = results.map(
    (r) =>
      `${r.passed ? "pass" : "FAIL"}  ${r.protocol.padEnd(6)}  ${r.name}${r.error === undefined ? "" : `: ${r.error}`}`,
  );
  const passed = results.filter((r) => r.passed).length;
  lines.push("", `${passed} passed, ${results.length - passed} failed`);
  return lines.join("\n");
}
