/** The ported hmm-tests (src/conformance/hmm_tests.ts), each under every protocol that should pass them. */
import { describe, it } from "vitest";
import { hmmTests } from "../../src/conformance/hmm_tests.js";
import type { ProtocolVersion } from "../../src/mm/kernel.js";

const PROTOCOLS: readonly ProtocolVersion[] = ["4.14", "modern"];

describe("hmm-tests.c ports", () => {
  for (const protocol of PROTOCOLS) {
    for (const t of hmmTests) {
      it(`${t.name} [${protocol}]`, () => t.run(protocol));
    }
  }
});
