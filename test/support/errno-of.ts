/** errnoOf lives with the conformance harness (src/conformance/harness.ts, shipped with the package); tests import it from here. */
export { errnoOf } from "../../src/conformance/harness.js";
