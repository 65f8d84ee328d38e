import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Suites that need a server we cannot reach are never skipped silently: the suite is registered
 * with describe.skip under a name that carries the reason, and the reason is recorded so the
 * skip reporter (test/support/skipReporter.js) lists every skipped suite by name at the end.
 */
export const SKIP_LOG = join(process.cwd(), 'test-output', 'skipped.ndjson');

export function describeSkipped(name: string, reason: string): void {
  mkdirSync(join(process.cwd(), 'test-output'), { recursive: true });
  appendFileSync(SKIP_LOG, JSON.stringify({ suite: name, reason }) + '\n');
  describe.skip(`${name} [SKIPPED: ${reason}]`, () => {
    it('needs its server', () => undefined);
  });
}
