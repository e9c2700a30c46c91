/** errnoOf lives in src/conformance/errno_of.ts (the conformance ports ship with the package); tests import it from here. */
export { errnoOf } from "../../src/conformance/errno_of.js";
