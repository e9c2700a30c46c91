/** The ported hmm-tests (src/conformance), each under every protocol and fixture variant. */
import { describe, expect, it } from "vitest";
import { appliesTo, runTest, VARIANTS } from "../../src/conformance/harness.js";
import { hmmTests, KERNEL_TEST_NAMES, unportedTests } from "../../src/conformance/hmm_tests.js";
import type { ProtocolVersion } from "../../src/mm/kernel.js";

const PROTOCOLS: readonly ProtocolVersion[] = ["4.14", "modern"];

describe("hmm-tests.c ports", () => {
  for (const protocol of PROTOCOLS) {
    for (const variant of VARIANTS) {
      for (const t of hmmTests.filter((test) => appliesTo(test, protocol))) {
        it(`${t.name} [${protocol}, ${variant}]`, (context) => {
          const outcome = runTest(t, { protocol, variant });
          if (outcome.status === "skipped") {
            context.skip(outcome.reason);
            return;
          }
          expect(outcome.reason).toBeUndefined();
          expect(outcome.status).toBe("passed");
        });
      }
    }
  }

  it("names only kernel tests, each once, in the kernel's order", () => {
    expect(KERNEL_TEST_NAMES).toHaveLength(38);
    expect(new Set(KERNEL_TEST_NAMES).size).toBe(38);
    const order = hmmTests.map((t) => KERNEL_TEST_NAMES.indexOf(t.name));
    expect(order.every((index, i) => index >= 0 && (i === 0 || index > order[i - 1]!))).toBe(true);
    expect(hmmTests.length + unportedTests.length).toBe(38);
  });
});
