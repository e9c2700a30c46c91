/** The ported hmm-tests (hmm-tests.ts), each under every protocol that should pass them. */
import { describe, it } from "vitest";
import type { ProtocolVersion } from "../../src/mm/kernel.js";
import { hmmTests } from "./hmm-tests.js";

const PROTOCOLS: readonly ProtocolVersion[] = ["4.14", "modern"];

describe("hmm-tests.c ports", () => {
  for (const protocol of PROTOCOLS) {
    for (const t of hmmTests) {
      it(`${t.name} [${protocol}]`, () => t.run(protocol));
    }
  }
});
