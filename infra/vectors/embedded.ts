import type { Pool } from 'pg';
import client from 'prom-client';
import { metrics } from '../../services/gateway/app';
import { tenantSchemaExists, withTenant } from '../postgres/schema';
import type { Candidate, Hit, IndexedChunk, IndexStats, KnowledgeIndex, SearchScope } from '../../services/search/knowledgeIndex';
import { Bm25Index, parseTsvector, type TermCounts } from './bm25';
import { HnswGraph, type HnswParams } from './hnsw';

/**
 * Embedded knowledge index: chunks, full-text vectors (`tsv`) and embeddings are durable in the
 * tenant's Postgres schema. For each tenant's searchable chunks (ready versions) the process also
 * holds, loaded lazily on the tenant's first search and kept current by activate/forgetDocument:
 *   - the embeddings, for exact cosine search (a tight loop over a Float32Array per document);
 *   - an Okapi BM25 inverted index (./bm25.ts) built from the stored `tsv`, for keyword search.
 * Both are per tenant: no structure is shared between tenants.
 *
 * Memory is bounded: the loaded tenants' estimated bytes (`tenantBytes`) are kept under
 * `memoryBytes` (INDEX_MEMORY_MB) by evicting the least recently searched tenants; an evicted
 * tenant is simply not loaded (activate/forgetDocument leave it alone) and its next search loads it
 * again from PostgreSQL. A tenant is never evicted while one of its searches (and so its load) is
 * running, nor while it is the most recently searched: a single tenant larger than the whole
 * budget stays loaded, alone.
 *
 * Tenants with at least `hnswMinChunks` vectors (INDEX_HNSW_MIN_CHUNKS) also get an HNSW graph
 * (./hnsw.ts), built in the background after the load (in batches, yielding to the event loop:
 * until it is ready searches scan exactly) and kept current by activate/forgetDocument; removed
 * documents are skipped by the graph and filtered again here, and the graph is rebuilt once they
 * exceed a quarter of it. Graph candidates are scored exactly from the loaded vectors.
 */
interface DocVectors {
  documentId: string;
  version: number;
  dims: number;
  chunkIndexes: Int32Array;
  vectors: Float32Array; // row-major, chunkIndexes.length x dims
}

interface TenantVectors {
  /** The serving embedder: the only one whose vectors are loaded. */
  embedderId: string | null;
  /** Keyword-only set for documents without a serving set (see SearchScope.fallbackEmbedderId). */
  fallbackId: string | null;
  /** Which embedder's chunk set each document is searched with. */
  docEmbedder: Map<string, string>;
  docs: Map<string, DocVectors>;
  bm25: Bm25Index;
  /** Vector rows in `docs`, and their estimated bytes (docBytes). */
  rows: number;
  vectorBytes: number;
  /** The HNSW graph searches use (complete: holds every doc of its dims), and one being built. */
  ann: HnswGraph<DocVectors> | null;
  annNext: HnswGraph<DocVectors> | null;
  /** tenantBytes() as last accounted in the running total. */
  bytes: number;
}

interface StagedChunk {
  chunkIndex: number;
  vector: Float32Array;
  /** The stored tsvector's text; parsed only if the tenant is loaded at activation. */
  tsv: string;
}

/** A chunk row as loaded from the tenant's schema (embedding null when of another embedder). */
interface ChunkRow {
  document_id: string;
  version: number;
  chunk_index: number;
  tsv: string;
  embedding: Buffer | null;
  embedder_id: string;
}

/**
 * Per document, the chunk set searched: the serving embedder's when the document has it complete,
 * else the fallback's (keyword only); $1 serving, $2 fallback (may be null: no match).
 */
const SET_CHOICE = `c.embedder_id = CASE WHEN $1::text = ANY(di.embedder_sets) THEN $1::text ELSE $2::text END`;

/** Rows per FETCH while loading a tenant: bounds the memory a load holds beyond the index itself. */
const LOAD_BATCH = 2000;

/** Defaults of INDEX_MEMORY_MB and INDEX_HNSW_MIN_CHUNKS (services/config.ts). */
export const DEFAULT_INDEX_MEMORY_MB = 512;
export const DEFAULT_HNSW_MIN_CHUNKS = 5_000;
/** Vector rows added to a graph being built between two yields to the event loop (~25 ms at 384-d). */
const BUILD_BATCH = 128;

/**
 * Estimated bytes beyond the typed arrays' byteLength (V8, 64-bit, Node 20): per document the
 * DocVectors object and its two typed-array views and buffers (~360), its entries in `docs` and
 * `docEmbedder` (~64); per tenant the maps, the Bm25Index object and empty arrays (~2 KiB).
 * BM25 counts itself (bm25.ts `bytes`, its term dictionary included), the graph itself (hnsw.ts
 * `bytes`). Checked against the JS heap + buffers retained after a full GC by the 1,265 tenants of
 * 100 chunks loaded at the end of `npm run bench -- --only tenants` (10,000 tenants, 512 MiB):
 * 362 KiB a tenant measured, 357 estimated from the parts above; the remainder (malloc's per
 * allocation headers, hash-table slack) is added per chunk as CHUNK_SLACK, rounded up.
 */
const DOC_OVERHEAD = 424;
const TENANT_OVERHEAD = 2048;
const CHUNK_SLACK = 64;
const docBytes = (d: DocVectors) => d.vectors.byteLength + d.chunkIndexes.byteLength + DOC_OVERHEAD;

/** Process-wide figures for /metrics (every embedded index in the process, summed). */
const liveIndexes = new Set<() => IndexStats>();
const sum = (f: (s: IndexStats) => number) => [...liveIndexes].reduce((a, st) => a + f(st()), 0);
const gauges: [string, string, (s: IndexStats) => number][] = [
  ['tenant_rag_index_tenants_loaded', 'Tenants whose vectors and BM25 postings the embedded index holds in memory', (x) => x.tenantsLoaded],
  ['tenant_rag_index_bytes', 'Estimated bytes of the loaded tenants (vectors, postings, HNSW graphs) in the embedded index', (x) => x.bytes],
  ['tenant_rag_index_budget_bytes', 'Memory budget of the embedded index (INDEX_MEMORY_MB)', (x) => x.budgetBytes ?? 0],
  ['tenant_rag_index_hnsw_tenants', 'Loaded tenants searched through an HNSW graph', (x) => x.hnswTenants ?? 0],
];
for (const [name, help, value] of gauges) {
  new client.Gauge({
    name,
    help,
    registers: [metrics.registry],
    collect() {
      this.set(sum(value));
    },
  });
}
const evictionsTotal = new client.Counter({
  name: 'tenant_rag_index_evictions_total',
  help: 'Tenants evicted from the embedded index to stay within INDEX_MEMORY_MB',
  registers: [metrics.registry],
});
const loadsTotal = new client.Counter({
  name: 'tenant_rag_index_loads_total',
  help: 'Tenant loads of the embedded index from PostgreSQL (first search, or after an eviction)',
  registers: [metrics.registry],
});

export interface EmbeddedIndexOptions {
  embedderId: () => string;
  /** Budget of the loaded tenants' estimated bytes, in MiB (INDEX_MEMORY_MB); default 512. */
  memoryMb?: number;
  /**
   * Vectors a tenant needs for an HNSW graph (INDEX_HNSW_MIN_CHUNKS); 0: never. Default 5,000: the
   * exact scan costs about 0.8 ms per 1,000 384-d vectors on a quiet core (2 ms on a busy one,
   * `npm run bench -- --only index`), so at 5,000 it stays within a 10 ms hybrid search.
   */
  hnswMinChunks?: number;
  hnsw?: Partial<HnswParams>;
  /** Hydration statements prepared per pooled connection, one per recent tenant (default HYDRATE_SLOTS). */
  hydrateSlots?: number;
  /** Called when a background graph build fails (the tenant keeps the exact scan). */
  onError?: (err: Error, tenantId: string) => void;
}

/**
 * Query analysis: the same English configuration as the stored `tsv` (stemming, stop words),
 * with each lexeme's number of occurrences in the query. A pure function: no tenant data is read.
 */
const ANALYZE_SQL = `SELECT lexeme, COALESCE(array_length(positions, 1), 1) AS n FROM unnest(to_tsvector('english', $1))`;

/**
 * A search's chunks, texts and filenames; a candidate names its chunk set, one without (an older
 * caller) reads the document's first set. Only a ready version's chunks come back.
 */
const HYDRATE_SQL = `SELECT c.document_id, c.version, c.chunk_index, c.text, c.heading_path, c.page, d.filename, c.embedder_id
  FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[]) AS k(document_id, version, chunk_index, embedder_id)
  JOIN document_index di ON di.document_id = k.document_id AND di.ready_version = k.version
  JOIN chunks c ON c.document_id = k.document_id AND c.version = k.version AND c.chunk_index = k.chunk_index
    AND c.embedder_id = COALESCE(k.embedder_id, di.embedder_id)
  JOIN documents d ON d.document_id = c.document_id`;

/**
 * The two statements every search runs are named, so each pooled connection parses them once and
 * then reuses the plan: planning the hydrate join (views included) cost 0.6 of its 1.0 ms per
 * search. Safe across tenants: PostgreSQL re-parses a prepared statement whenever search_path
 * differs from its previous use (so it reads the current tenant's schema) and checks privileges
 * under the current role at every execution.
 *
 * That re-parse costs more than a fresh unnamed statement (one connection, hydrate p50: 0.42 ms
 * for one tenant, 1.09 ms round robin over 20 tenants through one named statement, 0.89 ms
 * unnamed), so each connection keeps HYDRATE_SLOTS named hydrate statements, one per tenant it
 * served last (least recently used slot handed to a new tenant): a tenant searched again finds
 * its own plan. The plans are held by the connection's PostgreSQL backend: ~80 KiB each (its
 * CachedPlan contexts), 2.5 MiB a connection with every slot in use.
 */
const ANALYZE_STATEMENT = 'tenant_rag_analyze_query';
const HYDRATE_STATEMENT = 'tenant_rag_hydrate';
export const HYDRATE_SLOTS = 32;

/**
 * vectors[base .. base + dims) . query, for the exact scan and for scoring graph candidates (one
 * order of operations: the same float result). Four partial sums: independent chains pipeline
 * (about 1.8x the single-sum loop).
 */
function dot(vectors: Float32Array, base: number, query: Float32Array, dims: number): number {
  const dims4 = dims - (dims % 4);
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let d = 0;
  for (; d < dims4; d += 4) {
    const b = base + d;
    s0 += vectors[b]! * query[d]!;
    s1 += vectors[b + 1]! * query[d + 1]!;
    s2 += vectors[b + 2]! * query[d + 2]!;
    s3 += vectors[b + 3]! * query[d + 3]!;
  }
  for (; d < dims; d++) s0 += vectors[base + d]! * query[d]!;
  return s0 + s1 + s2 + s3;
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

export function createEmbeddedIndex(pool: Pool, opts: EmbeddedIndexOptions): KnowledgeIndex {
  const budgetBytes = Math.floor((opts.memoryMb ?? DEFAULT_INDEX_MEMORY_MB) * 2 ** 20);
  const hnswMinChunks = opts.hnswMinChunks ?? DEFAULT_HNSW_MIN_CHUNKS;
  const slotsPerConnection = Math.max(1, opts.hydrateSlots ?? HYDRATE_SLOTS);
  /** Per pooled connection: tenant -> its hydrate statement's slot, least recently used first. */
  const hydrateSlots = new WeakMap<object, Map<string, number>>();
  const hydrateStatement = (connection: object, tenantId: string): string => {
    let slots = hydrateSlots.get(connection);
    if (!slots) hydrateSlots.set(connection, (slots = new Map()));
    let slot = slots.get(tenantId);
    if (slot !== undefined) slots.delete(tenantId);
    else if (slots.size < slotsPerConnection) slot = slots.size;
    else {
      const [oldest, reused] = slots.entries().next().value as [string, number];
      slots.delete(oldest);
      slot = reused;
    }
    slots.set(tenantId, slot);
    return `${HYDRATE_STATEMENT}_${slot}`;
  };
  /** Loaded tenants, least recently searched first (a search moves its tenant to the end). */
  const tenants = new Map<string, TenantVectors>();
  let totalBytes = 0;
  let evictions = 0;
  let loads = 0;
  let graphSearches = 0;
  /** Searches running per tenant: such a tenant is never evicted. */
  const pins = new Map<string, number>();
  const loading = new Map<string, Promise<TenantVectors>>();
  /** Documents activated or forgotten while their tenant was loading: re-read once the load is done. */
  const changedWhileLoading = new Map<string, Set<string>>();
  /** Bumped by dropTenant, so a load that was running then does not install stale state. */
  const epochs = new Map<string, number>();

  function noteChange(tenantId: string, documentId: string): void {
    for (const [key, changed] of changedWhileLoading) if (key.startsWith(`${tenantId}\u0000`)) changed.add(documentId);
  }
  const isLoading = (tenantId: string) => [...loading.keys()].some((k) => k.startsWith(`${tenantId}\u0000`));

  /** Installs one document's rows (its ready version's chunks, all of one version) in the tenant's state. */
  function installDoc(tv: TenantVectors, documentId: string, rows: ChunkRow[], bulk = false): void {
    if (rows.length === 0) {
      setVectors(tv, documentId, null);
      tv.docEmbedder.delete(documentId);
      tv.bm25.removeDocument(documentId);
      return;
    }
    const version = rows[0]!.version;
    tv.docEmbedder.set(documentId, rows[0]!.embedder_id);
    const withVectors = rows.filter((r) => r.embedding !== null);
    setVectors(tv, documentId, withVectors.length ? packDoc(documentId, version, withVectors.map((r) => ({ chunkIndex: r.chunk_index, vector: fromBytes(r.embedding!) }))) : null);
    tv.bm25.setDocument(documentId, version, rows.map((r) => ({ chunkIndex: r.chunk_index, terms: parseTsvector(r.tsv) })), { bulk });
  }

  /** Re-reads one document's searchable chunks from the durable copy. */
  async function refreshDoc(tenantId: string, tv: TenantVectors, documentId: string): Promise<void> {
    const rows = await withTenant(
      pool,
      tenantId,
      async (c) =>
        (
          await c.query<ChunkRow>(
            `SELECT c.document_id, c.version, c.chunk_index, c.tsv::text AS tsv, c.embedder_id, CASE WHEN c.embedder_id = $1 THEN c.embedding END AS embedding
             FROM chunks c JOIN document_index di ON di.document_id = c.document_id AND di.ready_version = c.version
             WHERE c.document_id = $3 AND ${SET_CHOICE} ORDER BY c.chunk_index`,
            [tv.embedderId, tv.fallbackId, documentId],
          )
        ).rows,
      { readOnly: true },
    );
    installDoc(tv, documentId, rows);
    changed(tenantId, tv);
  }

  /** The one place a document's vectors change: keeps the counts and the graphs in step. */
  function setVectors(tv: TenantVectors, documentId: string, doc: DocVectors | null): void {
    const old = tv.docs.get(documentId);
    if (old) {
      tv.docs.delete(documentId);
      tv.rows -= old.chunkIndexes.length;
      tv.vectorBytes -= docBytes(old);
      tv.ann?.remove(old);
      tv.annNext?.remove(old);
    }
    if (doc) {
      tv.docs.set(documentId, doc);
      tv.rows += doc.chunkIndexes.length;
      tv.vectorBytes += docBytes(doc);
      // The graph searched stays complete; a graph being built picks the document up before it is ready.
      if (tv.ann && doc.dims === tv.ann.dims) tv.ann.add(doc);
    }
  }

  function tenantBytes(tv: TenantVectors): number {
    return TENANT_OVERHEAD + tv.vectorBytes + tv.bm25.bytes + tv.bm25.size * CHUNK_SLACK + (tv.ann?.bytes ?? 0) + (tv.annNext?.bytes ?? 0);
  }

  /** Re-estimates a loaded tenant's bytes into the running total. */
  function account(tenantId: string, tv: TenantVectors): void {
    if (tenants.get(tenantId) !== tv) return;
    const b = tenantBytes(tv);
    totalBytes += b - tv.bytes;
    tv.bytes = b;
  }

  function install(tenantId: string, tv: TenantVectors): void {
    uninstall(tenantId);
    tv.bytes = 0;
    tenants.set(tenantId, tv);
    account(tenantId, tv);
    maybeBuildGraph(tenantId, tv);
    enforceBudget();
  }

  function uninstall(tenantId: string): void {
    const tv = tenants.get(tenantId);
    if (!tv) return;
    tenants.delete(tenantId);
    totalBytes -= tv.bytes;
    tv.ann?.close();
    tv.annNext?.close();
    tv.ann = null;
    tv.annNext = null;
  }

  /** After a change to a loaded tenant: accounts it, starts or drops its graph, keeps the budget. */
  function changed(tenantId: string, tv: TenantVectors): void {
    if (tenants.get(tenantId) !== tv) return;
    if (tv.ann && (hnswMinChunks <= 0 || tv.rows < hnswMinChunks / 2)) {
      tv.ann.close();
      tv.ann = null;
    }
    maybeBuildGraph(tenantId, tv);
    account(tenantId, tv);
    enforceBudget();
  }

  /**
   * Evicts the least recently searched tenants while over budget: never one with a search
   * running, nor the most recently searched one (so a tenant larger than the whole budget, e.g. one
   * of 100,000 chunks with its graph, stays loaded alone instead of being reloaded on every search).
   */
  function enforceBudget(): void {
    if (totalBytes <= budgetBytes) return;
    const order = [...tenants.keys()];
    order.pop();
    for (const tenantId of order) {
      if (totalBytes <= budgetBytes) break;
      if (pins.get(tenantId)) continue;
      uninstall(tenantId);
      evictions++;
      evictionsTotal.inc();
    }
  }

  function touch(tenantId: string, tv: TenantVectors): void {
    if (tenants.get(tenantId) !== tv) return;
    tenants.delete(tenantId);
    tenants.set(tenantId, tv);
  }

  async function pinned<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
    pins.set(tenantId, (pins.get(tenantId) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      const n = pins.get(tenantId)! - 1;
      if (n > 0) pins.set(tenantId, n);
      else {
        pins.delete(tenantId);
        // Tenants kept over budget because they were being searched go now.
        enforceBudget();
      }
    }
  }

  /** Starts a background graph build when the tenant is large enough and has none, or its graph holds too many removed rows. */
  function maybeBuildGraph(tenantId: string, tv: TenantVectors): void {
    if (hnswMinChunks <= 0 || tv.annNext) return;
    if (tv.ann ? tv.ann.dead <= tv.ann.live / 4 : tv.rows < hnswMinChunks) return;
    const first = tv.docs.values().next().value as DocVectors | undefined;
    if (!first) return;
    const g = new HnswGraph<DocVectors>(tv.ann?.dims ?? first.dims, opts.hnsw);
    tv.annNext = g;
    buildGraph(tenantId, tv, g).catch((err: Error) => {
      g.close();
      if (tv.annNext === g) tv.annNext = null;
      opts.onError?.(err, tenantId);
    });
  }

  async function buildGraph(tenantId: string, tv: TenantVectors, g: HnswGraph<DocVectors>): Promise<void> {
    const current = () => tenants.get(tenantId) === tv && tv.annNext === g;
    let sinceYield = 0;
    for (;;) {
      const pending: DocVectors[] = [];
      for (const d of tv.docs.values()) if (!g.complete(d)) pending.push(d);
      if (pending.length === 0) break;
      for (const d of pending) {
        for (let done = 0; done < d.chunkIndexes.length; done += BUILD_BATCH) {
          if (sinceYield >= BUILD_BATCH) {
            await new Promise<void>((r) => setImmediate(r));
            sinceYield = 0;
            account(tenantId, tv);
          }
          if (!current()) {
            g.close();
            return;
          }
          if (tv.docs.get(d.documentId) !== d) break; // replaced or removed meanwhile
          g.add(d, done + BUILD_BATCH);
          sinceYield += Math.min(BUILD_BATCH, d.chunkIndexes.length - done);
        }
      }
    }
    // No await since the last check of `pending`: the graph holds every document of its dims.
    if (!current()) {
      g.close();
      return;
    }
    tv.ann?.close();
    tv.ann = g;
    tv.annNext = null;
    account(tenantId, tv);
    enforceBudget();
  }

  /**
   * The tenant's searchable state for one (serving, fallback) pair of embedders. A switch of the
   * serving embedder loads a new state; the old one keeps answering until the new one is installed.
   */
  async function load(tenantId: string, scope: SearchScope): Promise<TenantVectors> {
    const embedderId = scope.embedderId ?? opts.embedderId();
    const fallbackId = scope.fallbackEmbedderId ?? null;
    const cached = tenants.get(tenantId);
    if (cached && cached.embedderId === embedderId && cached.fallbackId === fallbackId) {
      touch(tenantId, cached);
      return cached;
    }
    const loadKey = `${tenantId}\u0000${embedderId}\u0000${fallbackId ?? ''}`;
    let p = loading.get(loadKey);
    if (!p) {
      const changed = new Set<string>();
      changedWhileLoading.set(loadKey, changed);
      const epoch = epochs.get(tenantId) ?? 0;
      const done = () => {
        if (changedWhileLoading.get(loadKey) !== changed) return;
        changedWhileLoading.delete(loadKey);
        loading.delete(loadKey);
      };
      p = (async () => {
        const tv: TenantVectors = { embedderId, fallbackId, docEmbedder: new Map(), docs: new Map(), bm25: new Bm25Index(), rows: 0, vectorBytes: 0, ann: null, annNext: null, bytes: 0 };
        if (!(await tenantSchemaExists(pool, tenantId))) return tv;
        loads++;
        loadsTotal.inc();
        // One snapshot, read through a cursor so that at most LOAD_BATCH rows are held at once.
        // Per ready version, the chunk set chosen by SET_CHOICE; vectors only of the serving embedder.
        await withTenant(
          pool,
          tenantId,
          async (c) => {
            await c.query(
              `DECLARE tr_load NO SCROLL CURSOR FOR
               SELECT c.document_id, c.version, c.chunk_index, c.tsv::text AS tsv, c.embedder_id, CASE WHEN c.embedder_id = $1 THEN c.embedding END AS embedding
               FROM chunks c JOIN document_index di ON di.document_id = c.document_id AND di.ready_version = c.version
               WHERE ${SET_CHOICE}
               ORDER BY c.document_id, c.chunk_index`,
              [embedderId, fallbackId],
            );
            let group: ChunkRow[] = [];
            for (;;) {
              const rows = (await c.query<ChunkRow>(`FETCH ${LOAD_BATCH} FROM tr_load`)).rows;
              for (const row of rows) {
                if (group.length && group[0]!.document_id !== row.document_id) {
                  installDoc(tv, group[0]!.document_id, group, true);
                  group = [];
                }
                group.push(row);
              }
              if (rows.length < LOAD_BATCH) break;
            }
            if (group.length) installDoc(tv, group[0]!.document_id, group, true);
            await c.query('CLOSE tr_load');
            tv.bm25.merge();
          },
          { readOnly: true },
        );
        // Activations and deletes that raced the snapshot: re-read those documents.
        while (changed.size > 0) {
          const documentIds = [...changed];
          changed.clear();
          for (const documentId of documentIds) await refreshDoc(tenantId, tv, documentId);
        }
        // No await from here on: a change is either recorded above or sees the installed state.
        done();
        if ((epochs.get(tenantId) ?? 0) === epoch) install(tenantId, tv);
        return tv;
      })().finally(done);
      loading.set(loadKey, p);
    }
    return p;
  }

  function packDoc(documentId: string, version: number, items: { chunkIndex: number; vector: Float32Array }[]): DocVectors {
    const dims = items[0]?.vector.length ?? 0;
    const vectors = new Float32Array(items.length * dims);
    const chunkIndexes = new Int32Array(items.length);
    items.forEach((it, k) => {
      vectors.set(it.vector, k * dims);
      chunkIndexes[k] = it.chunkIndex;
    });
    return { documentId, version, dims, chunkIndexes, vectors };
  }

  /** Query terms (lexeme -> occurrences), analysed by PostgreSQL as the chunks were. */
  async function analyze(query: string): Promise<TermCounts> {
    const r = await pool.query<{ lexeme: string; n: number }>({ name: ANALYZE_STATEMENT, text: ANALYZE_SQL, values: [query] });
    return new Map(r.rows.map((row) => [row.lexeme, Number(row.n)]));
  }


  /** Exact cosine (inner product of unit vectors) over every loaded vector of the query's dims. */
  function exactSearch(tv: TenantVectors, query: Float32Array, k: number, onlyDocumentId?: string): Candidate[] {
    const embedderId = tv.embedderId ?? undefined;
    const dims = query.length;
    // Bounded min-heap would be faster for large k; k is small (<= 100), so keep a sorted array.
    const top: Candidate[] = [];
    let worst = -Infinity;
    for (const [documentId, doc] of tv.docs) {
      if (onlyDocumentId && documentId !== onlyDocumentId) continue;
      const { vectors, chunkIndexes } = doc;
      const n = chunkIndexes.length;
      if (vectors.length !== n * dims) continue; // different model dimensions: never mixed
      for (let i = 0; i < n; i++) {
        const s = dot(vectors, i * dims, query, dims);
        if (top.length < k || s > worst) {
          const cand = { documentId, version: doc.version, chunkIndex: chunkIndexes[i]!, score: s, embedderId };
          let pos = top.length;
          while (pos > 0 && top[pos - 1]!.score < s) pos--;
          top.splice(pos, 0, cand);
          if (top.length > k) top.pop();
          worst = top[top.length - 1]!.score;
        }
      }
    }
    return top;
  }

  /**
   * Top k through the graph, scored exactly; null when it cannot answer in full (fewer live rows
   * found than k and than the tenant holds: the caller scans exactly instead).
   */
  function graphSearch(tv: TenantVectors, g: HnswGraph<DocVectors>, query: Float32Array, k: number): Candidate[] | null {
    const embedderId = tv.embedderId ?? undefined;
    const dims = g.dims;
    const out: Candidate[] = [];
    const found = g.search(query, k);
    if (!found) return null; // closed under a running search (the tenant was dropped or reloaded)
    for (const { owner, row } of found) {
      if (tv.docs.get(owner.documentId) !== owner) continue; // replaced or removed: never surfaces
      out.push({ documentId: owner.documentId, version: owner.version, chunkIndex: owner.chunkIndexes[row]!, score: dot(owner.vectors, row * dims, query, dims), embedderId });
    }
    if (out.length < Math.min(k, g.live)) return null;
    graphSearches++;
    out.sort((a, b) => b.score - a.score || (a.documentId < b.documentId ? -1 : a.documentId > b.documentId ? 1 : a.chunkIndex - b.chunkIndex));
    return out;
  }

  function stats(): IndexStats {
    let hnswTenants = 0;
    let building = 0;
    let chunks = 0;
    for (const tv of tenants.values()) {
      if (tv.ann) hnswTenants++;
      if (tv.annNext) building++;
      chunks += tv.rows;
    }
    return { kind: 'embedded', tenantsLoaded: tenants.size, chunksLoaded: chunks, bytes: totalBytes, budgetBytes, evictions, loads, hnswTenants, hnswBuilding: building, hnswMinChunks, hnswSearches: graphSearches };
  }

  // Staged vectors of document versions being indexed, moved into the searchable set on activate.
  const staged = new Map<string, StagedChunk[]>();
  const stageKey = (t: string, d: string, v: number, e: string) => `${t}/${d}/${v}/${e}`;

  liveIndexes.add(stats);
  return {
    kind: 'embedded',
    async ensureTenant() {
      // The tenant's schema is created by the platform projection.
    },
    async dropTenant(tenantId) {
      uninstall(tenantId);
      epochs.set(tenantId, (epochs.get(tenantId) ?? 0) + 1);
      for (const k of staged.keys()) if (k.startsWith(`${tenantId}/`)) staged.delete(k);
    },
    async stageChunks(tenantId, documentId, version, embedderId, chunks: IndexedChunk[]) {
      if (chunks.length === 0) return;
      // The stored tsv comes back with the insert: the BM25 index gets PostgreSQL's own analysis.
      const tsvs = await withTenant(pool, tenantId, async (c) => {
        const values: unknown[] = [];
        const rows: string[] = [];
        for (const ch of chunks) {
          const b = values.length;
          rows.push(`($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7}, $${b + 8}, $${b + 9})`);
          values.push(documentId, ch.chunkIndex, version, ch.text, ch.headingPath, ch.page, ch.tokenCount, toBytes(ch.vector), embedderId);
        }
        const inserted = await c.query<{ chunk_index: number; tsv: string }>(
          `INSERT INTO chunks (document_id, chunk_index, version, text, heading_path, page, token_count, embedding, embedder_id)
           VALUES ${rows.join(', ')}
           ON CONFLICT (document_id, version, embedder_id, chunk_index) DO UPDATE
             SET text = EXCLUDED.text, embedding = EXCLUDED.embedding, embedder_id = EXCLUDED.embedder_id
           RETURNING chunk_index, tsv::text AS tsv`,
          values,
        );
        await c.query('UPDATE document_index SET chunks_done = chunks_done + $2, updated_at = now() WHERE document_id = $1 AND version = $3', [documentId, chunks.length, version]);
        return new Map(inserted.rows.map((r) => [r.chunk_index, r.tsv]));
      });
      const key = stageKey(tenantId, documentId, version, embedderId);
      const list = staged.get(key) ?? [];
      for (const ch of chunks) list.push({ chunkIndex: ch.chunkIndex, vector: ch.vector, tsv: tsvs.get(ch.chunkIndex) ?? '' });
      staged.set(key, list);
    },
    async activate(tenantId, documentId, version, info) {
      const key = stageKey(tenantId, documentId, version, info.embedderId);
      let beside = false;
      const ok = await withTenant(pool, tenantId, async (c) => {
        const cur = await c.query<{ version: number; ready_version: number | null }>('SELECT version, ready_version FROM document_index WHERE document_id = $1 FOR UPDATE', [
          documentId,
        ]);
        if (cur.rows[0]?.version !== version) {
          await c.query('DELETE FROM chunks WHERE document_id = $1 AND version = $2', [documentId, version]);
          return false;
        }
        if (cur.rows[0].ready_version === version) {
          // A re-embedding of the served version: the new set joins the served ones, nothing is dropped.
          beside = true;
          await c.query(
            `UPDATE document_index SET embedder_sets = CASE WHEN $2::text = ANY(embedder_sets) THEN embedder_sets ELSE array_append(embedder_sets, $2::text) END,
               chunks_done = chunks_total, status = 'ready', error = NULL, updated_at = now() WHERE document_id = $1`,
            [documentId, info.embedderId],
          );
          return true;
        }
        await c.query(
          `UPDATE document_index SET ready_version = $2, status = 'ready', error = NULL, chunks_total = $3, chunks_done = $3,
             embedder_id = $4, embedder_sets = ARRAY[$4::text], format = $5, updated_at = now() WHERE document_id = $1`,
          [documentId, version, info.chunkCount, info.embedderId, info.format],
        );
        await c.query('DELETE FROM chunks WHERE document_id = $1 AND version <> $2', [documentId, version]);
        return true;
      });
      let items = staged.get(key) ?? [];
      staged.delete(key);
      if (!ok) return false;
      if (isLoading(tenantId)) {
        noteChange(tenantId, documentId);
        return true;
      }
      const tv = tenants.get(tenantId);
      if (!tv) return true; // not loaded: the first search reads the durable copy
      // A set built beside the served one changes nothing searched until the tenant switches.
      if (beside && info.embedderId !== tv.embedderId && info.embedderId !== tv.fallbackId) return true;
      // Staged by another process or before a restart (or duplicated by a retry): the durable copy is authoritative.
      const complete = items.length === info.chunkCount && new Set(items.map((it) => it.chunkIndex)).size === items.length;
      if (!complete || beside || info.embedderId !== tv.embedderId) {
        await refreshDoc(tenantId, tv, documentId);
        return true;
      }
      items = [...items].sort((a, b) => a.chunkIndex - b.chunkIndex);
      setVectors(tv, documentId, items.length ? packDoc(documentId, version, items) : null);
      tv.docEmbedder.set(documentId, info.embedderId);
      tv.bm25.setDocument(documentId, version, items.map((it) => ({ chunkIndex: it.chunkIndex, terms: parseTsvector(it.tsv) })));
      changed(tenantId, tv);
      return true;
    },
    async forgetDocument(tenantId, documentId) {
      noteChange(tenantId, documentId);
      const tv = tenants.get(tenantId);
      if (tv) {
        setVectors(tv, documentId, null);
        tv.docEmbedder.delete(documentId);
        tv.bm25.removeDocument(documentId);
        changed(tenantId, tv);
      }
      for (const k of staged.keys()) if (k.startsWith(`${tenantId}/${documentId}/`)) staged.delete(k);
    },
    keyword(tenantId, query, scope: SearchScope) {
      return pinned(tenantId, async () => {
        const [tv, terms] = await Promise.all([load(tenantId, scope), analyze(query)]);
        return tv.bm25.search(terms, Math.max(scope.topK, 1), scope.documentId).map((c) => ({ ...c, embedderId: tv.docEmbedder.get(c.documentId) }));
      });
    },
    vector(tenantId, query, scope: SearchScope) {
      return pinned(tenantId, async () => {
        const tv = await load(tenantId, scope);
        const k = Math.max(scope.topK, 1);
        const g = tv.ann;
        if (g && !scope.documentId && query.length === g.dims) {
          const found = graphSearch(tv, g, query, k);
          if (found) return found;
        }
        return exactSearch(tv, query, k, scope.documentId);
      });
    },
    stats,
    hydrate(tenantId, candidates) {
      if (candidates.length === 0) return Promise.resolve([]);
      // Answers as soon as the rows are read: the COMMIT of the read-only transaction (withTenant
      // still sends it, then releases the connection) changes nothing read, so the search does
      // not wait a round trip for it. An error before the rows are in rolls back and rejects.
      return new Promise<Hit[]>((resolve, reject) => {
        withTenant(
          pool,
          tenantId,
          async (c) => {
            const r = await c.query<{
              document_id: string;
              version: number;
              chunk_index: number;
              text: string;
              heading_path: string[];
              page: number | null;
              filename: string;
              embedder_id: string;
            }>({
              name: hydrateStatement(c, tenantId),
              text: HYDRATE_SQL,
              values: [candidates.map((x) => x.documentId), candidates.map((x) => x.version), candidates.map((x) => x.chunkIndex), candidates.map((x) => x.embedderId ?? null)],
            });
            const byKey = new Map(r.rows.map((row) => [`${row.document_id}/${row.version}/${row.chunk_index}`, row]));
            const hits: Hit[] = [];
            for (const cand of candidates) {
              const row = byKey.get(`${cand.documentId}/${cand.version}/${cand.chunkIndex}`);
              if (!row) continue;
              hits.push({ ...cand, embedderId: row.embedder_id, text: row.text, filename: row.filename, headingPath: row.heading_path ?? [], page: row.page });
            }
            resolve(hits);
          },
          { readOnly: true },
        ).catch(reject);
      });
    },
    async dropEmbedderSets(tenantId, embedderId) {
      if (!(await tenantSchemaExists(pool, tenantId))) return;
      await withTenant(pool, tenantId, async (c) => {
        await c.query('DELETE FROM chunks WHERE embedder_id = $1', [embedderId]);
        await c.query(
          `UPDATE document_index SET embedder_sets = array_remove(embedder_sets, $1::text),
             embedder_id = CASE WHEN embedder_id = $1::text THEN (array_remove(embedder_sets, $1::text))[1] ELSE embedder_id END
           WHERE $1::text = ANY(embedder_sets) OR embedder_id = $1::text`,
          [embedderId],
        );
      });
      const tv = tenants.get(tenantId);
      if (tv && (tv.embedderId === embedderId || tv.fallbackId === embedderId)) uninstall(tenantId);
      for (const k of staged.keys()) if (k.startsWith(`${tenantId}/`) && k.endsWith(`/${embedderId}`)) staged.delete(k);
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
      for (const tenantId of [...tenants.keys()]) uninstall(tenantId);
      liveIndexes.delete(stats);
      staged.clear();
    },
  };
}

