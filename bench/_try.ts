import { randomUUID } from 'node:crypto';
import { startBench } from './harness';
import { createPool } from '../infra/postgres/pool';
import { migratePlatform, createTenantSchema, enterTenant } from '../infra/postgres/schema';
import { documentUploadedData } from './data';
(async () => {
  const b = await startBench({ quick: true, cpuProfDir: null });
  try {
    const url = await b.createDatabase('bench_x');
    const pool = createPool(url, { max: 4 });
    await migratePlatform(pool);
    const t = randomUUID();
    const c = await pool.connect();
    await c.query('BEGIN'); await createTenantSchema(c, t); await c.query('COMMIT');
    const times: Record<string, number> = {};
    const timed = async (k: string, f: () => Promise<unknown>) => { const s = performance.now(); await f(); times[k] = (times[k] ?? 0) + performance.now() - s; };
    const N = 1000;
    await c.query('BEGIN');
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const d = documentUploadedData(randomUUID());
      await timed('jobs', () => c.query(`INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, document_id) DO UPDATE SET version = EXCLUDED.version WHERE platform.index_jobs.version < EXCLUDED.version`, [t, d.documentId, 1, d.sha256, d.filename, d.contentType]));
      await timed('enter', () => enterTenant(c, t));
      await timed('docs', () => c.query(`INSERT INTO documents (document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) ON CONFLICT (document_id) DO NOTHING`, [d.documentId, d.filename, null, d.contentType, 1, d.sha256, 1, 'x', new Date().toISOString(), 'p']));
      await timed('di', () => c.query(`INSERT INTO document_index (document_id, version, status, updated_at) VALUES ($1, $2, 'pending', $3) ON CONFLICT (document_id) DO NOTHING`, [d.documentId, 1, new Date().toISOString()]));
      await timed('reset', () => c.query('RESET ROLE; SET LOCAL search_path TO platform'));
      await timed('select1', () => c.query('SELECT 1'));
    }
    await c.query('COMMIT');
    const total = performance.now() - t0;
    console.log('per event ms', (total / N).toFixed(3), Object.fromEntries(Object.entries(times).map(([k, v]) => [k, (v / N).toFixed(3)])));
    c.release(); await pool.end();
  } finally { await b.close(); }
})().catch((e) => { console.error(e); process.exit(1); });
