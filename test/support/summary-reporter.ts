import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints the closing line CI reads, `N passed, N failed`, after vitest's own report.
 * Skipped tests are counted separately, on the line before, so that a skip never reads as a pass.
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
    // CI reads the last line as exactly "N passed, N failed"; skips (the kernel's own SKIPs, with their
    // reasons in vitest's report) go on the line before it.
    if (skipped > 0) process.stdout.write(`${skipped} skipped\n`);
    process.stdout.write(`${passed} passed, ${failed} failed\n`);
  }
}
