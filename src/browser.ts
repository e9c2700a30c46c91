/**
 * The library surface, for a browser: what `npm run build:browser` bundles into dist/browser/hmmsim.js.
 * It is the package's own entry point (src/index.ts): the friendly surface (System, Process, the device
 * handles), the errors it throws and the uapi constants its calls take. Everything it reaches must run
 * without Node (test/browser/core-imports.test.ts checks the import graph; scripts/build-browser.ts
 * refuses a Node builtin).
 */
export * from "./index.js";
