import { Router, type Request } from 'express';
import type { PoolClient } from 'pg';
import { z } from 'zod';
import { withTenant } from '../../infra/postgres/schema';
import { auditTable, GENESIS, rowHash, type AuditRow } from '../../projections/audit/auditProjection';
import { ValidationError } from '../core/errors';
import { requireRole } from '../gateway/auth';
import { type AppDeps, principalOf } from '../gateway/context';

const filtersSchema = z
  .object({
    actor: z.string().max(200).optional(),
    type: z.string().regex(/^[A-Za-z]{1,64}$/).optional(),
    subject: z.string().max(200).optional(),
    since: z.string().datetime({ offset: true }).optional(),
    until: z.string().datetime({ offset: true }).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    cursor: z.string().regex(/^\d{1,18}$/, 'cursor is not valid').optional(),
  })
  .strict();

function filters(req: Request) {
  const r = filtersSchema.safeParse(req.query);
  if (!r.success) throw new ValidationError(r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return r.data;
}

function where(f: ReturnType<typeof filters>) {
  const clauses: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    clauses.push(sql.replace('?', `$${params.length}`));
  };
  if (f.actor) add('actor = ?', f.actor);
  if (f.type) add('type = ?', f.type);
  if (f.subject) add('subject = ?', f.subject);
  if (f.since) add('occurred_at >= ?', f.since);
  if (f.until) add('occurred_at < ?', f.until);
  if (f.cursor) add('seq < ?', f.cursor);
  return { sql: clauses.length ? `WHERE ${clauses.join(' AND ')}` : '', params };
}

const view = (r: Record<string, unknown>) => ({
  seq: Number(r.seq),
  event_id: r.event_id,
  type: r.type,
  actor: r.actor,
  subject: r.subject,
  occurred_at: r.occurred_at,
  correlation_id: r.correlation_id,
  result: r.result,
  details: r.details,
  position: r.position,
  hash: r.hash,
});

/**
 * Runs `fn` in the tenant's read-only scope against the live version of its audit table, or
 * answers `empty` while that table does not exist yet (no event projected for the tenant).
 */
export async function readAudit<T>(deps: Pick<AppDeps, 'pool'>, tenantId: string, empty: T, fn: (c: PoolClient, table: string) => Promise<T>): Promise<T> {
  const r = await deps.pool.query<{ active_version: number }>(`SELECT active_version FROM platform.projection_versions WHERE name = 'audit'`);
  const table = auditTable(r.rows[0]?.active_version ?? 1);
  return withTenant(
    deps.pool,
    tenantId,
    async (c) => {
      const exists = await c.query('SELECT to_regclass($1) AS t', [table]);
      return exists.rows[0]?.t ? fn(c, table) : empty;
    },
    { readOnly: true },
  );
}

/** The tenant's audit log (owners and admins): a projection of every event, hash-chained. */
export function auditApi(deps: AppDeps): Router {
  const r = Router();

  r.get('/v1/audit', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const f = filters(req);
    const w = where(f);
    const rows = await readAudit(deps, p.tenantId, [], async (c, t) => (await c.query(`SELECT * FROM ${t} ${w.sql} ORDER BY seq DESC LIMIT ${f.limit + 1}`, w.params)).rows);
    const page = rows.slice(0, f.limit);
    res.json({ items: page.map(view), next_cursor: rows.length > f.limit ? String(page[page.length - 1]!.seq) : null });
  });

  r.get('/v1/audit/export', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const f = filters(req);
    res.status(200).type('application/x-ndjson');
    // Page through with the seq cursor so memory stays flat however long the log is.
    let cursor = f.cursor;
    for (;;) {
      const w = where({ ...f, cursor });
      const rows = await readAudit(deps, p.tenantId, [], async (c, t) => (await c.query(`SELECT * FROM ${t} ${w.sql} ORDER BY seq DESC LIMIT 1000`, w.params)).rows);
      for (const row of rows) res.write(`${JSON.stringify(view(row))}\n`);
      if (rows.length < 1000) break;
      cursor = String(rows[rows.length - 1]!.seq);
    }
    res.end();
  });

  r.get('/v1/audit/verify', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const result = await readAudit(
      deps,
      p.tenantId,
      { intact: true, entries: 0, broken_at: null as number | null, reason: null as string | null },
      async (c, t) => {
        let prev = GENESIS;
        let entries = 0;
        let after = 0;
        for (;;) {
          const rows = (await c.query(`SELECT * FROM ${t} WHERE seq > $1 ORDER BY seq LIMIT 5000`, [after])).rows;
          for (const row of rows) {
            const expected: AuditRow = {
              event_id: row.event_id,
              position: row.position,
              occurred_at: row.occurred_at,
              actor: row.actor,
              type: row.type,
              subject: row.subject,
              correlation_id: row.correlation_id,
              result: row.result,
              details: row.details,
            };
            if (row.prev_hash !== prev) return { intact: false, entries, broken_at: Number(row.seq), reason: 'an entry before this one was removed or altered' };
            if (rowHash(prev, expected) !== row.hash) return { intact: false, entries, broken_at: Number(row.seq), reason: 'this entry was altered' };
            prev = row.hash;
            entries++;
            after = Number(row.seq);
          }
          if (rows.length < 5000) break;
        }
        return { intact: true, entries, broken_at: null, reason: null };
      },
    );
    res.json(result);
  });

  return r;
}
