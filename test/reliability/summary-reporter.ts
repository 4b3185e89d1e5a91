/**
 * Prints one closing line, exactly `N passed, M failed`, after vitest's own summary, so CI logs and
 * BENCHMARKS.md can quote the reliability suite's result. Failed modules (a file that could not load
 * or a failing hook) count as failures too.
 */
import type { Reporter, TestModule } from "vitest/node";

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    for (const mod of testModules) {
      let cases = 0;
      for (const test of mod.children.allTests()) {
        cases++;
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
      }
      if (cases === 0 && mod.state() === "failed") failed++;
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
  }
}
