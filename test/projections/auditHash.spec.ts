import { createHash, randomUUID } from 'node:crypto';
import { type AuditRow, canonical, GENESIS, hashedText, rowHash } from '../../projections/audit/auditProjection';

/**
 * The audit chain's hashes must never change (stored chains are verified with them): the fast
 * `canonical`, `hashedText` and one-shot hashing must give byte for byte what the original
 * definitions below give.
 */
function canonicalReference(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalReference).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .filter((k) => o[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalReference(o[k])}`)
    .join(',')}}`;
}
const rowHashReference = (prev: string, row: AuditRow) =>
  createHash('sha256')
    .update(prev)
    .update('\n')
    .update(canonicalReference({ ...row, occurred_at: new Date(row.occurred_at).toISOString() }))
    .digest('hex');

const rows = (): AuditRow[] => [
  {
    event_id: randomUUID(),
    position: '0000000000000001-0000000000000042',
    occurred_at: '2026-11-20T09:00:00.000Z',
    actor: `user:${randomUUID()}`,
    type: 'SearchPerformed',
    subject: null,
    correlation_id: randomUUID(),
    result: 'success',
    details: { queryHash: 'q', mode: 'hybrid', topK: 5, resultChunkIds: ['a', 'b'] },
  },
  {
    event_id: randomUUID(),
    position: '1-2',
    // As read back from PostgreSQL (verify), and not in canonical ISO form.
    occurred_at: new Date('2026-11-21T10:11:12.5+02:00') as unknown as string,
    actor: 'sys:"quoted"\\ \u2028 é',
    type: 'TenantLimitsChanged',
    subject: randomUUID(),
    correlation_id: '',
    result: 'failure',
    details: { z: { b: [1, 2.5, -0, 1e21, true, null, { y: undefined, x: 'ü' }], a: undefined }, '': 'empty key', 'k"é': [[], {}], n: undefined },
  },
  {
    event_id: randomUUID(),
    position: '1-3',
    occurred_at: '2026-11-21T09:00:00Z',
    actor: 'user:x',
    type: 'UserRemoved',
    subject: undefined as unknown as null,
    correlation_id: 'c',
    result: 'success',
    details: {},
  },
];

describe('audit row hashes', () => {
  it('canonical JSON is the original definition', () => {
    const odd: unknown[] = [[1, undefined, , 3], { a: undefined, b: null, c: [undefined] }, 'x', 3, null, [], {}, { b: 1, a: { d: [{}], c: '' } }];
    for (const v of odd) expect(canonical(v)).toBe(canonicalReference(v));
  });

  it('a row hashes to what the original definition gives, along a chain', () => {
    let prev = GENESIS;
    let prevReference = GENESIS;
    for (const row of rows()) {
      expect(hashedText(row)).toBe(canonicalReference({ ...row, occurred_at: new Date(row.occurred_at).toISOString() }));
      prev = rowHash(prev, row);
      prevReference = rowHashReference(prevReference, row);
      expect(prev).toBe(prevReference);
    }
  });
});
