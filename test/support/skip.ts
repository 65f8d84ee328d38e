import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Suites that need a server we cannot reach are never skipped silently: the suite is registered
 * with describe.skip under a name that carries the reason, and the reason is recorded so the
 * skip reporter (test/support/skipReporter.js) lists every skipped suite by name at the end.
 */
/** This jest run's log, set by the reporter before the workers start (a default outside jest's reporter). */
export const skipLog = (): string => process.env.TENANT_RAG_SKIP_LOG ?? join(process.cwd(), 'test-output', 'skipped.ndjson');

export function describeSkipped(name: string, reason: string): void {
  const log = skipLog();
  mkdirSync(dirname(log), { recursive: true });
  appendFileSync(log, JSON.stringify({ suite: name, reason }) + '\n');
  describe.skip(`${name} [SKIPPED: ${reason}]`, () => {
    it('needs its server', () => undefined);
  });
}
