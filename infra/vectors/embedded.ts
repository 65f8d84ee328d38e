import type { Pool } from 'pg';
import { tenantSchemaExists, withTenant } from '../postgres/schema';
import type { Candidate, Hit, IndexedChunk, KnowledgeIndex, SearchScope } from '../../services/search/knowledgeIndex';

/**
 * Embedded knowledge index: chunks, full-text vectors and embeddings are durable in the tenant's
 * Postgres schema; the embeddings of each tenant's searchable chunks are also held in memory
 * (loaded lazily on the tenant's first search) for exact cosine search. Exact search over one
 * tenant's vectors is a tight loop over a Float32Array: see bench/ for where it stands.
 */
interface DocVectors {
  version: number;
  chunkIndexes: Int32Array;
  vectors: Float32Array; // row-major, chunkIndexes.length x dims
}

interface TenantVectors {
  embedderId: string | null;
  docs: Map<string, DocVectors>;
}

export function toBytes(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function fromBytes(b: Buffer): Float32Array {
  // Copy: the Buffer may share a pool slab with unaligned offset.
  const out = new Float32Array(b.length / 4);
  Buffer.from(out.buffer).set(b);
  return out;
}

export function createEmbeddedIndex(pool: Pool, opts: { embedderId: () => string }): KnowledgeIndex {
  const tenants = new Map<string, TenantVectors>();
  const loading = new Map<string, Promise<TenantVectors>>();

  async function load(tenantId: string): Promise<TenantVectors> {
    const cached = tenants.get(tenantId);
    if (cached) return cached;
    let p = loading.get(tenantId);
    if (!p) {
      p = (async () => {
        const embedderId = opts.embedderId();
        const tv: TenantVectors = { embedderId, docs: new Map() };
        if (!(await tenantSchemaExists(pool, tenantId))) return tv;
        const rows = await withTenant(
          pool,
          tenantId,
          async (c) =>
            (
              await c.query<{ document_id: string; version: number; chunk_index: number; embedding: Buffer }>(
                `SELECT c.document_id, c.version, c.chunk_index, c.embedding FROM chunks c
                 JOIN document_index di ON di.document_id = c.document_id AND di.ready_version = c.version
                 WHERE c.embedder_id = $1 ORDER BY c.document_id, c.chunk_index`,
                [embedderId],
              )
            ).rows,
          { readOnly: true },
        );
        let i = 0;
        while (i < rows.length) {
          const first = rows[i]!;
          let j = i;
          while (j < rows.length && rows[j]!.document_id === first.document_id) j++;
          const group = rows.slice(i, j);
          tv.docs.set(first.document_id, packDoc(first.version, group.map((r) => ({ chunkIndex: r.chunk_index, vector: fromBytes(r.embedding) }))));
          i = j;
        }
        tenants.set(tenantId, tv);
        return tv;
      })().finally(() => loading.delete(tenantId));
      loading.set(tenantId, p);
    }
    return p;
  }

  function packDoc(version: number, items: { chunkIndex: number; vector: Float32Array }[]): DocVectors {
    const dims = items[0]?.vector.length ?? 0;
    const vectors = new Float32Array(items.length * dims);
    const chunkIndexes = new Int32Array(items.length);
    items.forEach((it, k) => {
      vectors.set(it.vector, k * dims);
      chunkIndexes[k] = it.chunkIndex;
    });
    return { version, chunkIndexes, vectors };
  }

  // Staged vectors of document versions being indexed, moved into the searchable set on activate.
  const staged = new Map<string, { chunkIndex: number; vector: Float32Array }[]>();
  const stageKey = (t: string, d: string, v: number) => `${t}/${d}/${v}`;

  return {
    kind: 'embedded',
    async ensureTenant() {
      // The tenant's schema is created by the platform projection.
    },
    async dropTenant(tenantId) {
      tenants.delete(tenantId);
      for (const k of staged.keys()) if (k.startsWith(`${tenantId}/`)) staged.delete(k);
    },
    async stageChunks(tenantId, documentId, version, embedderId, chunks: IndexedChunk[]) {
      if (chunks.length === 0) return;
      await withTenant(pool, tenantId, async (c) => {
        const values: unknown[] = [];
        const rows: string[] = [];
        for (const ch of chunks) {
          const b = values.length;
          rows.push(`($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7}, $${b + 8}, $${b + 9})`);
          values.push(documentId, ch.chunkIndex, version, ch.text, ch.headingPath, ch.page, ch.tokenCount, toBytes(ch.vector), embedderId);
        }
        await c.query(
          `INSERT INTO chunks (document_id, chunk_index, version, text, heading_path, page, token_count, embedding, embedder_id)
           VALUES ${rows.join(', ')}
           ON CONFLICT (document_id, version, chunk_index) DO UPDATE
             SET text = EXCLUDED.text, embedding = EXCLUDED.embedding, embedder_id = EXCLUDED.embedder_id`,
          values,
        );
        await c.query('UPDATE document_index SET chunks_done = chunks_done + $2, updated_at = now() WHERE document_id = $1 AND version = $3', [documentId, chunks.length, version]);
      });
      const key = stageKey(tenantId, documentId, version);
      const list = staged.get(key) ?? [];
      for (const ch of chunks) list.push({ chunkIndex: ch.chunkIndex, vector: ch.vector });
      staged.set(key, list);
    },
    async activate(tenantId, documentId, version, info) {
      const key = stageKey(tenantId, documentId, version);
      const ok = await withTenant(pool, tenantId, async (c) => {
        const cur = await c.query<{ version: number }>('SELECT version FROM document_index WHERE document_id = $1 FOR UPDATE', [documentId]);
        if (cur.rows[0]?.version !== version) {
          await c.query('DELETE FROM chunks WHERE document_id = $1 AND version = $2', [documentId, version]);
          return false;
        }
        await c.query(
          `UPDATE document_index SET ready_version = $2, status = 'ready', error = NULL, chunks_total = $3, chunks_done = $3,
             embedder_id = $4, format = $5, updated_at = now() WHERE document_id = $1`,
          [documentId, version, info.chunkCount, info.embedderId, info.format],
        );
        await c.query('DELETE FROM chunks WHERE document_id = $1 AND version <> $2', [documentId, version]);
        return true;
      });
      let items = staged.get(key) ?? [];
      staged.delete(key);
      const tv = tenants.get(tenantId);
      if (ok && tv && tv.embedderId === info.embedderId) {
        if (items.length !== info.chunkCount) {
          // Staged by another process or before a restart: the durable copy is authoritative.
          items = await withTenant(pool, tenantId, async (c) =>
            (await c.query<{ chunk_index: number; embedding: Buffer }>('SELECT chunk_index, embedding FROM chunks WHERE document_id = $1 AND version = $2 AND embedder_id = $3 ORDER BY chunk_index', [documentId, version, info.embedderId])).rows.map((r) => ({ chunkIndex: r.chunk_index, vector: fromBytes(r.embedding) })),
          { readOnly: true });
        }
        if (items.length) tv.docs.set(documentId, packDoc(version, items));
        else tv.docs.delete(documentId);
      }
      return ok;
    },
    async forgetDocument(tenantId, documentId) {
      tenants.get(tenantId)?.docs.delete(documentId);
      for (const k of staged.keys()) if (k.startsWith(`${tenantId}/${documentId}/`)) staged.delete(k);
    },
    async keyword(tenantId, query, scope: SearchScope) {
      const limit = Math.max(scope.topK, 1);
      return withTenant(
        pool,
        tenantId,
        async (c) => {
          const r = await c.query<{ document_id: string; version: number; chunk_index: number; score: number }>(
            `WITH q AS (
               SELECT to_tsquery('simple', COALESCE((SELECT string_agg(quote_literal(lexeme), ' | ') FROM unnest(to_tsvector('english', $1))), '')) AS q
             )
             SELECT c.document_id, c.version, c.chunk_index, ts_rank(c.tsv, q.q, 1) AS score
             FROM q, chunks c
             JOIN document_index di ON di.document_id = c.document_id AND di.ready_version = c.version
             WHERE c.tsv @@ q.q AND ($3::uuid IS NULL OR c.document_id = $3::uuid)
             ORDER BY score DESC, c.document_id, c.chunk_index
             LIMIT $2`,
            [query, limit, scope.documentId ?? null],
          );
          return r.rows.map((row) => ({ documentId: row.document_id, version: row.version, chunkIndex: row.chunk_index, score: Number(row.score) }));
        },
        { readOnly: true },
      );
    },
    async vector(tenantId, query, scope: SearchScope) {
      const tv = await load(tenantId);
      const k = Math.max(scope.topK, 1);
      const dims = query.length;
      // Bounded min-heap would be faster for large k; k is small (<= 100), so keep a sorted array.
      const top: Candidate[] = [];
      let worst = -Infinity;
      for (const [documentId, doc] of tv.docs) {
        if (scope.documentId && documentId !== scope.documentId) continue;
        const { vectors, chunkIndexes } = doc;
        const n = chunkIndexes.length;
        if (vectors.length !== n * dims) continue; // different model dimensions: never mixed
        for (let i = 0; i < n; i++) {
          let s = 0;
          const base = i * dims;
          for (let d = 0; d < dims; d++) s += vectors[base + d]! * query[d]!;
          if (top.length < k || s > worst) {
            const cand = { documentId, version: doc.version, chunkIndex: chunkIndexes[i]!, score: s };
            let pos = top.length;
            while (pos > 0 && top[pos - 1]!.score < s) pos--;
            top.splice(pos, 0, cand);
            if (top.length > k) top.pop();
            worst = top[top.length - 1]!.score;
          }
        }
      }
      return top;
    },
    async hydrate(tenantId, candidates) {
      if (candidates.length === 0) return [];
      return withTenant(
        pool,
        tenantId,
        async (c) => {
          const r = await c.query<{ document_id: string; version: number; chunk_index: number; text: string; heading_path: string[]; page: number | null; filename: string }>(
            `SELECT c.document_id, c.version, c.chunk_index, c.text, c.heading_path, c.page, d.filename
             FROM unnest($1::uuid[], $2::int[], $3::int[]) AS k(document_id, version, chunk_index)
             JOIN chunks c ON c.document_id = k.document_id AND c.version = k.version AND c.chunk_index = k.chunk_index
             JOIN document_index di ON di.document_id = c.document_id AND di.ready_version = c.version
             JOIN documents d ON d.document_id = c.document_id`,
            [candidates.map((x) => x.documentId), candidates.map((x) => x.version), candidates.map((x) => x.chunkIndex)],
          );
          const byKey = new Map(r.rows.map((row) => [`${row.document_id}/${row.version}/${row.chunk_index}`, row]));
          const hits: Hit[] = [];
          for (const cand of candidates) {
            const row = byKey.get(`${cand.documentId}/${cand.version}/${cand.chunkIndex}`);
            if (!row) continue;
            hits.push({ ...cand, text: row.text, filename: row.filename, headingPath: row.heading_path ?? [], page: row.page });
          }
          return hits;
        },
        { readOnly: true },
      );
    },
    async embedderIds(tenantId) {
      if (!(await tenantSchemaExists(pool, tenantId))) return [];
      return withTenant(pool, tenantId, async (c) => (await c.query<{ embedder_id: string }>('SELECT DISTINCT embedder_id FROM chunks')).rows.map((r) => r.embedder_id), {
        readOnly: true,
      });
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      tenants.clear();
    },
  };
}

