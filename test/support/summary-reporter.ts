import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints the closing line CI reads, `N passed, N failed`, after vitest's own report.
 * Skipped tests are counted separately so that a skip never reads as a pass.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const testModule of testModules) {
      for (const testCase of testModule.children.allTests()) {
        const state = testCase.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      // A module that failed to load has no tests but must still fail the run.
      if (testModule.state() === "failed" && testModule.children.size === 0) failed++;
    }
    const tail = skipped > 0 ? `, ${skipped} skipped` : "";
    process.stdout.write(`${passed} passed, ${failed} failed${tail}\n`);
  }
}
