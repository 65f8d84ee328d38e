// Prints every skipped suite by name with its reason at the end of `npm test`.
const { readFileSync, rmSync, existsSync } = require('node:fs');
const { join } = require('node:path');

const LOG = join(process.cwd(), 'test-output', 'skipped.ndjson');

class SkipReporter {
  onRunStart() {
    if (existsSync(LOG)) rmSync(LOG);
  }
  onRunComplete(_contexts, results) {
    this.printSkipped();
    if (results) {
      // The plain closing line CI reads in any language.
      const skipped = results.numPendingTests + results.numTodoTests;
      process.stdout.write(`\njest: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped\n`);
    }
  }
  printSkipped() {
    if (!existsSync(LOG)) return;
    const seen = new Map();
    for (const line of readFileSync(LOG, 'utf8').split('\n')) {
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
