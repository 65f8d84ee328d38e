// Prints every skipped suite by name with its reason at the end of `npm test`.
const { readFileSync, rmSync, existsSync } = require('node:fs');
const { join } = require('node:path');

/**
 * One log per jest run: the reporter is created in the main process before any test worker is
 * spawned, and the workers inherit the path through the environment (test/support/skip.ts). So
 * a leftover of an earlier run, or another jest run in the same checkout at the same time, can
 * neither add suites to this run's list nor delete them from it.
 */
const ENV = 'TENANT_RAG_SKIP_LOG';

class SkipReporter {
  constructor() {
    this.log = join(process.cwd(), 'test-output', `skipped-${process.pid}-${Date.now().toString(36)}.ndjson`);
    process.env[ENV] = this.log;
  }
  onRunStart() {
    if (existsSync(this.log)) rmSync(this.log);
  }
  onRunComplete(_contexts, results) {
    this.printSkipped();
    if (existsSync(this.log)) rmSync(this.log);
    if (results) {
      // The plain closing line CI reads in any language.
      const skipped = results.numPendingTests + results.numTodoTests;
      process.stdout.write(`\njest: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped\n`);
    }
  }
  printSkipped() {
    if (!existsSync(this.log)) return;
    const seen = new Map();
    for (const line of readFileSync(this.log, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const { suite, reason } = JSON.parse(line);
      seen.set(suite, reason);
    }
    if (seen.size === 0) return;
    process.stdout.write(`\nSkipped suites (${seen.size}), each with its reason:\n`);
    for (const [suite, reason] of seen) process.stdout.write(`  SKIPPED ${suite}: ${reason}\n`);
  }
}
module.exports = SkipReporter;
