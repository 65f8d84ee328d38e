import type { Pool } from 'pg';
import weaviate, { Filters, configure, generateUuid5, type Collection, type FilterValue, type WeaviateClient } from 'weaviate-client';
import { weaviateTenant } from '../../contracts/naming';
import type { Candidate, IndexedChunk, KnowledgeIndex, SearchScope } from '../../services/search/knowledgeIndex';
import { withTenant } from '../postgres/schema';
import { createEmbeddedIndex } from './embedded';

/**
 * Weaviate knowledge index (production profile).
 *
 * Postgres stays the durable record of every chunk (text, provenance, embedding): the embedded
 * index owns those rows and the document's `ready_version`, so read models can be rebuilt from
 * Postgres and `hydrate()` needs no Weaviate round-trip. Weaviate holds a searchable copy:
 * BM25 over the chunk text and HNSW over the vectors, in ONE multi-tenant collection where each
 * of our tenants is one Weaviate tenant (its own shard on disk).
 *
 * Isolation: every data and query call goes through `shard(tenantId)`, a handle bound with
 * `withTenant(weaviateTenant(tenantId))`. Weaviate refuses a query on a multi-tenant collection
 * without a tenant, and with auto-creation off it refuses an unknown tenant, so neither a
 * forgotten filter nor a forged id can reach (or conjure) another tenant's shard.
 *
 * Consistency: Weaviate has no transactions. Object ids are uuidv5 of (tenant, document, version,
 * chunk), so a redelivered stage overwrites the same objects. A staged version may be visible in
 * Weaviate before `activate()` makes it the document's `ready_version` in Postgres (and stale
 * objects may linger for a moment after), so every search drops candidates whose version is not
 * the ready one before it cuts the list to topK.
 *
 * Embedders: every object records its embedder, and every search filters on the tenant's serving
 * embedder (SearchScope.embedderId), so a re-embedding's new objects live beside the served ones
 * unseen until the tenant switches. An HNSW index fixes its dimensions per shard, so vectors of
 * each width live in a collection of their own: `<collection>` for 384 (all-MiniLM-L6-v2 and the
 * hashing fallback, as before) and `<collection>_<n>d` for any other width n.
 *
 * Hibernation: a shard nobody used for `idleTenantSeconds` is set INACTIVE (Weaviate unloads it
 * from memory, its files stay on disk; OFFLOADED would need an S3 offload module). Last use is
 * shared by every process through PostgreSQL (platform.weaviate_shard_use, written at most every
 * few seconds), so the indexer does not put to sleep a tenant the gateway is searching. Every call
 * on a shard goes through `onShard`, which activates a shard known to be inactive first (concurrent
 * callers share one activation) and, when Weaviate answers "tenant not active" (another process or
 * an operator deactivated it meanwhile), activates it and retries the call once.
 */

/** Properties of one object; the vector is the chunk's embedding. */
type ChunkProps = {
  documentId: string;
  version: number;
  chunkIndex: number;
  text: string;
  embedderId: string;
};

/** Tenant shards of the base collection by activity status, and what this process did to them. */
export interface WeaviateIndexStats {
  kind: 'weaviate';
  /** ACTIVE tenants: loaded in Weaviate's memory (as of the last sweep). */
  tenantsLoaded: number;
  tenantsActive: number;
  /** INACTIVE (or OFFLOADED) tenants: on disk only, woken by their next request. */
  tenantsInactive: number;
  /** Not known to this process: the memory is Weaviate's. */
  bytes: number;
  budgetBytes: null;
  /** Shards this process set INACTIVE after IDLE seconds without use, since start. */
  evictions: number;
  /** Shards this process reactivated for a request, since start. */
  loads: number;
  /** WEAVIATE_IDLE_TENANT_SECONDS (0: never hibernate). */
  idleTenantSeconds: number;
  /** When the counts were taken (ISO), null before the first sweep. */
  countedAt: string | null;
}

// stats() narrowed: the port's is optional and more general (an index without figures returns null).
export type WeaviateKnowledgeIndex = Omit<KnowledgeIndex, 'stats'> & {
  /**
   * Keyword and vector search fused by Weaviate in one round-trip (see HYBRID_FUSION), for the
   * search service to use instead of its own two queries plus RRF when this adapter is active.
   */
  hybrid(tenantId: string, query: string, vector: Float32Array, scope: SearchScope): Promise<Candidate[]>;
  stats(): WeaviateIndexStats;
  /** One sweep now (the timer runs them too): records uses, counts shards, hibernates idle ones; returns how many it set INACTIVE. */
  hibernateIdleTenants(): Promise<number>;
};

export interface WeaviateIndexOptions {
  /** HTTP endpoint, e.g. http://127.0.0.1:8080. gRPC is taken to be on the same host. */
  url: string;
  grpcPort: number;
  pool: Pool;
  /** Id of the embedder whose vectors queries are made with (vectors of other embedders are never mixed in). */
  embedderId: () => string;
  /** Length of every vector written or queried; a mismatch is a configuration error, reported as such. */
  dimensions: number;
  /** Default 'TenantChunk'; vectors of a width other than 384 go to `<collection>_<n>d`. */
  collection?: string;
  /** Width of another embedder's vectors (a tenant's serving embedder during a re-embedding), when known. */
  dimensionsOf?: (embedderId: string) => number | null;
  /** API key, for a Weaviate that requires authentication. */
  apiKey?: string;
  /** Shards unused this long are set INACTIVE (WEAVIATE_IDLE_TENANT_SECONDS); 0 or unset: never. */
  idleTenantSeconds?: number;
  /** Failures of the background sweep (it retries at its next tick). */
  onError?: (err: Error, what: string) => void;
}

/**
 * Relative-score fusion (Weaviate's default since 1.24): each side's scores are min-max
 * normalised and summed with weights alpha / 1-alpha. Unlike ranked (reciprocal-rank) fusion it
 * keeps how far apart results are, not just their order, and it yields scores in [0, 1].
 */
export const HYBRID_FUSION = 'RelativeScore' as const;
/** Equal weight to keyword and vector evidence, like the embedded path's RRF of the two lists. */
export const HYBRID_ALPHA = 0.5;

/** Objects per insert request: keeps one gRPC message well under the server's size limit. */
const INSERT_BATCH = 200;
/** Weaviate's default QUERY_MAXIMUM_RESULTS; over-fetching never asks beyond it. */
const MAX_RESULTS = 10_000;
/** Rounds of widening the search when too many candidates were not of a ready version. */
const MAX_ROUNDS = 3;

const RETURN_PROPS: (keyof ChunkProps)[] = ['documentId', 'version', 'chunkIndex', 'embedderId'];
/** How long the list of other widths' collections is trusted (another process may add one). */
const WIDTHS_TTL_MS = 30_000;
/** The width whose vectors live in the collection under its plain name (existing deployments). */
const BASE_DIMENSIONS = 384;
/** Shards set INACTIVE per collection and sweep: a burst of idle tenants is spread over sweeps. */
const HIBERNATE_BATCH = 100;
/** Sweep (and usage flush) period without hibernation: the counts in stats() stay fresh. */
const QUIET_SWEEP_MS = 60_000;
/** What Weaviate (1.39) answers for a query, batch write or batch delete on an INACTIVE tenant: "tenant not active: 'x'". */
const NOT_ACTIVE = /tenant not active/i;

const USE_TABLE = 'platform.weaviate_shard_use';
const USE_DDL = `CREATE TABLE IF NOT EXISTS ${USE_TABLE} (
  collection text NOT NULL,
  tenant text NOT NULL,
  last_used_at timestamptz NOT NULL,
  PRIMARY KEY (collection, tenant)
)`;

export function tenantNotActive(err: unknown): boolean {
  return err instanceof Error && NOT_ACTIVE.test(err.message);
}

async function ensureUseTable(pool: Pool): Promise<void> {
  try {
    await pool.query(USE_DDL);
  } catch (err) {
    // Two processes starting at once: the loser's CREATE fails on the catalog's unique index.
    const exists = await pool.query(`SELECT to_regclass('${USE_TABLE}') IS NOT NULL AS ok`);
    if (!exists.rows[0]?.ok) throw err;
  }
}

export async function createWeaviateIndex(opts: WeaviateIndexOptions): Promise<WeaviateKnowledgeIndex> {
  const { pool, dimensions } = opts;
  if (!Number.isInteger(dimensions) || dimensions <= 0) throw new Error(`weaviate index: dimensions must be a positive integer, got ${dimensions}`);
  const collectionName = opts.collection ?? 'TenantChunk';
  const endpoint = new URL(opts.url);
  const secure = endpoint.protocol === 'https:';
  const host = endpoint.hostname;
  const httpPort = endpoint.port ? Number(endpoint.port) : secure ? 443 : 80;
  const httpPath = endpoint.pathname.replace(/\/+$/, '');
  const readyUrl = `${endpoint.origin}${httpPath}/v1/.well-known/ready`;

  const client: WeaviateClient = await weaviate.connectToCustom({
    httpHost: host,
    httpPort,
    httpSecure: secure,
    ...(httpPath ? { httpPath } : {}),
    grpcHost: host,
    grpcPort: opts.grpcPort,
    grpcSecure: secure,
    ...(opts.apiKey ? { authCredentials: new weaviate.ApiKey(opts.apiKey) } : {}),
    // Seconds. init bounds start-up against an unreachable server; the others bound stuck calls.
    timeout: { init: 5, query: 30, insert: 90 },
  });

  let base: Collection<ChunkProps>;
  try {
    base = await ensureCollection(client, collectionName);
  } catch (err) {
    await client.close().catch(() => undefined);
    throw err;
  }
  try {
    await ensureUseTable(pool);
  } catch (err) {
    await client.close().catch(() => undefined);
    throw err;
  }
  const nameFor = (dims: number) => (dims === BASE_DIMENSIONS ? collectionName : `${collectionName}_${dims}d`);
  const collections = new Map<string, Promise<Collection<ChunkProps>>>([[collectionName, Promise.resolve(base)]]);
  const collectionFor = (dims: number): Promise<Collection<ChunkProps>> => {
    const name = nameFor(dims);
    let p = collections.get(name);
    if (!p) {
      p = ensureCollection(client, name);
      p.catch(() => collections.delete(name));
      collections.set(name, p);
    }
    return p;
  };
  /**
   * Collections of other widths on the server (for deletes and tenant removal): those this process
   * uses, and those another process created, listed at most every WIDTHS_TTL_MS.
   */
  let listed: { at: number; names: string[] } = { at: 0, names: [] };
  async function widthCollections(): Promise<Collection<ChunkProps>[]> {
    if (Date.now() - listed.at > WIDTHS_TTL_MS) {
      const re = new RegExp(`^${collectionName}_\\d+d$`);
      listed = { at: Date.now(), names: (await client.collections.listAll()).map((c) => c.name).filter((n) => re.test(n)) };
    }
    const names = new Set([...listed.names, ...[...collections.keys()].filter((n) => n !== collectionName)]);
    return [...names].map((n) => client.collections.get<ChunkProps>(n));
  }
  const knownShards = new Set<string>();
  /**
   * The collection of `dims`, with the tenant's shard in it. Only the base collection's tenants are
   * created by ensureTenant; a tenant existing there gets its shard in another width's collection on first use.
   */
  async function shardCollection(tenantId: string, dims: number): Promise<Collection<ChunkProps>> {
    const coll = await collectionFor(dims);
    const name = weaviateTenant(tenantId);
    if (coll !== base && !knownShards.has(`${coll.name}/${name}`)) {
      if (await tenantExists(tenantId)) {
        const existing = await coll.tenants.getByName(name);
        if (!existing) await coll.tenants.create({ name, activityStatus: 'ACTIVE' });
        knownShards.add(`${coll.name}/${name}`);
      }
    }
    return coll;
  }

  // ---- hibernation of idle shards ----------------------------------------------------------------
  const idleSeconds = Math.max(0, opts.idleTenantSeconds ?? 0);
  const idleMs = Math.round(idleSeconds * 1000);
  const sweepMs = idleMs > 0 ? Math.min(QUIET_SWEEP_MS, Math.max(200, Math.floor(idleMs / 2))) : QUIET_SWEEP_MS;
  const shardKey = (coll: string, tenant: string) => `${coll}/${tenant}`;
  /** Uses since the last flush to PostgreSQL: shard key -> Date.now() of the latest. */
  let pendingUses = new Map<string, number>();
  /** Calls running per shard: the sweep never deactivates a shard this process is using. */
  const busy = new Map<string, number>();
  /** Shards known INACTIVE here (this process deactivated them, or Weaviate said so). */
  const inactive = new Set<string>();
  const activations = new Map<string, Promise<void>>();
  const counters = { deactivated: 0, activated: 0, active: 0, inactive: 0, countedAt: null as string | null };

  function activate(coll: Collection<ChunkProps>, tenant: string): Promise<void> {
    const key = shardKey(coll.name, tenant);
    let p = activations.get(key);
    if (!p) {
      p = (async () => {
        await coll.tenants.update({ name: tenant, activityStatus: 'ACTIVE' });
        inactive.delete(key);
        counters.activated++;
      })().finally(() => activations.delete(key));
      activations.set(key, p);
    }
    return p;
  }

  /**
   * Every call on a tenant's shard: records the use, wakes the shard first when it is known to
   * sleep, and when Weaviate refuses the call because the shard is not active (deactivated by
   * another process since), wakes it and runs the call once more. Calls are idempotent (upserts by
   * uuid, deletes by filter, queries), so a retry after a partial failure is safe.
   */
  async function onShard<T>(coll: Collection<ChunkProps>, tenantId: string, call: (shard: Collection<ChunkProps>) => Promise<T>): Promise<T> {
    const tenant = weaviateTenant(tenantId);
    const key = shardKey(coll.name, tenant);
    pendingUses.set(key, Date.now());
    busy.set(key, (busy.get(key) ?? 0) + 1);
    try {
      if (inactive.has(key) || activations.has(key)) await activate(coll, tenant);
      const shard = coll.withTenant(tenant);
      try {
        return await call(shard);
      } catch (err) {
        if (!tenantNotActive(err)) throw err;
        inactive.add(key);
        await activate(coll, tenant);
        return await call(shard);
      }
    } finally {
      const n = (busy.get(key) ?? 1) - 1;
      if (n > 0) busy.set(key, n);
      else busy.delete(key);
      pendingUses.set(key, Date.now());
    }
  }

  /** Writes this process's uses to the shared table; the database's clock decides, minus each use's age. */
  async function flushUses(): Promise<void> {
    if (pendingUses.size === 0) return;
    const batch = pendingUses;
    pendingUses = new Map();
    const now = Date.now();
    const colls: string[] = [];
    const tenants: string[] = [];
    const ages: number[] = [];
    for (const [key, at] of batch) {
      const slash = key.indexOf('/');
      colls.push(key.slice(0, slash));
      tenants.push(key.slice(slash + 1));
      ages.push(Math.max(0, now - at) / 1000);
    }
    try {
      await pool.query(
        `INSERT INTO ${USE_TABLE} (collection, tenant, last_used_at)
         SELECT c, t, now() - make_interval(secs => a) FROM unnest($1::text[], $2::text[], $3::float8[]) AS u(c, t, a)
         ON CONFLICT (collection, tenant) DO UPDATE SET last_used_at = GREATEST(${USE_TABLE}.last_used_at, EXCLUDED.last_used_at)`,
        [colls, tenants, ages],
      );
    } catch (err) {
      // Keep them for the next flush (newer uses of the same shard win).
      for (const [key, at] of batch) if ((pendingUses.get(key) ?? 0) < at) pendingUses.set(key, at);
      throw err;
    }
  }

  /** Counts the collection's shards by status and sets its idle ACTIVE ones INACTIVE (at most HIBERNATE_BATCH). */
  async function sweepCollection(coll: Collection<ChunkProps>): Promise<number> {
    const all = Object.values(await coll.tenants.get());
    const active = all.filter((t) => t.activityStatus === 'ACTIVE').map((t) => t.name);
    if (coll === base) {
      counters.active = active.length;
      counters.inactive = all.length - active.length;
      counters.countedAt = new Date().toISOString();
    }
    for (const t of all) {
      if (t.activityStatus === 'ACTIVE') inactive.delete(shardKey(coll.name, t.name));
      else inactive.add(shardKey(coll.name, t.name));
    }
    if (idleMs === 0 || active.length === 0) return 0;
    // A shard no process has recorded a use of (e.g. active since before this version) starts its idle time now.
    const r = await pool.query<{ tenant: string }>(
      `WITH seeded AS (
         INSERT INTO ${USE_TABLE} (collection, tenant, last_used_at) SELECT $1, t, now() FROM unnest($2::text[]) AS t
         ON CONFLICT (collection, tenant) DO NOTHING
       )
       SELECT tenant FROM ${USE_TABLE}
        WHERE collection = $1 AND tenant = ANY($2::text[]) AND last_used_at < now() - make_interval(secs => $3)
        ORDER BY last_used_at LIMIT $4`,
      [coll.name, active, idleMs / 1000, HIBERNATE_BATCH],
    );
    // Not while this process is using it, nor when it was used after the flush that preceded this query.
    const idle = r.rows.map((row) => row.tenant).filter((t) => !busy.has(shardKey(coll.name, t)) && !pendingUses.has(shardKey(coll.name, t)));
    if (idle.length === 0) return 0;
    await coll.tenants.update(idle.map((name) => ({ name, activityStatus: 'INACTIVE' as const })));
    for (const t of idle) inactive.add(shardKey(coll.name, t));
    counters.deactivated += idle.length;
    return idle.length;
  }

  let sweeping: Promise<number> | null = null;
  function sweep(): Promise<number> {
    if (!sweeping) {
      sweeping = (async () => {
        await flushUses();
        let n = 0;
        for (const coll of [base, ...(await widthCollections())]) n += await sweepCollection(coll);
        return n;
      })().finally(() => {
        sweeping = null;
      });
    }
    return sweeping;
  }
  const sweepInBackground = () => {
    sweep().catch((err: unknown) => opts.onError?.(err instanceof Error ? err : new Error(String(err)), 'weaviate tenant sweep'));
  };
  const sweepTimer = setInterval(sweepInBackground, sweepMs);
  sweepTimer.unref();
  // Counts for stats() from the start; shards idle since before this process started sleep now.
  sweepInBackground();
  /** Widths seen in this process's writes, for keyword searches (which carry no vector) of another embedder's set. */
  const widths = new Map<string, number>();
  const dimsOf = (embedderId: string): number =>
    embedderId === opts.embedderId() ? dimensions : (widths.get(embedderId) ?? opts.dimensionsOf?.(embedderId) ?? dimensions);

  const inner = createEmbeddedIndex(pool, { embedderId: opts.embedderId });

  // The embedder is part of the id: a re-embedding writes its set beside the served one.
  const objectId = (tenantId: string, documentId: string, version: number, embedderId: string, chunkIndex: number) =>
    generateUuid5(`${tenantId}/${documentId}/${version}/${embedderId}/${chunkIndex}`);

  const byDocument = (documentId: string) => base.filter.byProperty('documentId').equal(documentId);

  function checkDimensions(v: Float32Array, what: string, expected: number): void {
    if (v.length !== expected) throw new Error(`weaviate index: ${what} has ${v.length} dimensions, its embedder has ${expected}`);
  }

  /**
   * Batch delete removes at most QUERY_MAXIMUM_RESULTS objects per call (10,000 by default) and a
   * large document has more chunks than that, so repeat until nothing matches.
   */
  async function deleteWhere(tenantId: string, where: FilterValue): Promise<number> {
    let total = 0;
    // Every width's collection the tenant has a shard in (the base one always).
    const targets = [base];
    for (const coll of await widthCollections()) {
      if (await coll.tenants.getByName(weaviateTenant(tenantId))) targets.push(coll);
    }
    for (const target of targets) {
      for (;;) {
        const r = await onShard(target, tenantId, (shard) => shard.data.deleteMany(where));
        if (r.failed > 0) throw new Error(`weaviate index: ${r.failed} of ${r.matches} objects could not be deleted`);
        total += r.successful;
        if (r.matches === 0 || r.successful === 0) break;
      }
    }
    return total;
  }

  async function tenantExists(tenantId: string): Promise<boolean> {
    return (await base.tenants.getByName(weaviateTenant(tenantId))) !== null;
  }

  /**
   * Keeps only candidates of the version each document currently serves (its ready_version) and of
   * the chunk set it is searched with: the serving embedder's when complete, else the fallback's.
   */
  async function keepReady(tenantId: string, scope: SearchScope, candidates: Candidate[]): Promise<Candidate[]> {
    if (candidates.length === 0) return candidates;
    const serving = scope.embedderId ?? opts.embedderId();
    const ids = [...new Set(candidates.map((c) => c.documentId))];
    const ready = await withTenant(
      pool,
      tenantId,
      async (c) =>
        (
          await c.query<{ document_id: string; ready_version: number; embedder_sets: string[] }>(
            'SELECT document_id, ready_version, embedder_sets FROM document_index WHERE document_id = ANY($1::uuid[]) AND ready_version IS NOT NULL',
            [ids],
          )
        ).rows,
      { readOnly: true },
    );
    const chosen = new Map(
      ready.map((r) => [r.document_id, { version: r.ready_version, embedderId: r.embedder_sets.includes(serving) ? serving : (scope.fallbackEmbedderId ?? null) }]),
    );
    return candidates.filter((c) => {
      const d = chosen.get(c.documentId);
      return d !== undefined && d.version === c.version && d.embedderId !== null && d.embedderId === c.embedderId;
    });
  }

  /**
   * Runs a ranked query, over-fetching so that topK candidates of ready versions remain after
   * staged or stale versions are dropped; widens the search when the first page was not enough
   * and more results exist.
   */
  async function ranked(tenantId: string, scope: SearchScope, run: (limit: number) => Promise<Candidate[]>): Promise<Candidate[]> {
    const k = Math.max(1, Math.floor(scope.topK));
    let limit = Math.min(MAX_RESULTS, k + Math.max(8, k));
    for (let round = 1; ; round++) {
      const raw = await run(limit);
      const kept = await keepReady(tenantId, scope, raw);
      if (kept.length >= k || raw.length < limit || limit >= MAX_RESULTS || round >= MAX_ROUNDS) return kept.slice(0, k);
      limit = Math.min(MAX_RESULTS, limit * 4);
    }
  }

  /** Filters every search shares: the document scope and the embedder whose chunk set is searched. */
  function searchFilter(scope: SearchScope, embedderId: string): FilterValue {
    const parts: FilterValue[] = [base.filter.byProperty('embedderId').equal(embedderId)];
    if (scope.documentId) parts.push(byDocument(scope.documentId));
    return parts.length === 1 ? parts[0]! : Filters.and(...parts);
  }

  function toCandidate(o: { properties: Partial<ChunkProps>; uuid: string }, score: number): Candidate {
    const { documentId, version, chunkIndex, embedderId } = o.properties;
    if (typeof documentId !== 'string' || typeof version !== 'number' || typeof chunkIndex !== 'number') {
      throw new Error(`weaviate index: object ${o.uuid} lacks documentId/version/chunkIndex`);
    }
    return { documentId, version, chunkIndex, score, ...(typeof embedderId === 'string' ? { embedderId } : {}) };
  }

  return {
    kind: 'weaviate',

    async ensureTenant(tenantId) {
      await inner.ensureTenant(tenantId);
      const name = weaviateTenant(tenantId);
      const existing = await base.tenants.getByName(name);
      // Creating an existing tenant is a no-op on the server, so two projectors racing here is fine.
      if (!existing) await base.tenants.create({ name, activityStatus: 'ACTIVE' });
      // Auto-activation is off: a tenant someone deactivated would refuse every query.
      else if (existing.activityStatus !== 'ACTIVE') await activate(base, name);
      pendingUses.set(shardKey(base.name, name), Date.now());
    },

    async dropTenant(tenantId) {
      await inner.dropTenant(tenantId);
      // Removing an unknown tenant succeeds, so a redelivered TenantDeleted is harmless.
      await base.tenants.remove(weaviateTenant(tenantId));
      for (const coll of await widthCollections()) await coll.tenants.remove(weaviateTenant(tenantId));
      for (const k of knownShards) if (k.endsWith(`/${weaviateTenant(tenantId)}`)) knownShards.delete(k);
      for (const k of [...inactive, ...pendingUses.keys()]) {
        if (k.endsWith(`/${weaviateTenant(tenantId)}`)) {
          inactive.delete(k);
          pendingUses.delete(k);
        }
      }
      await pool.query(`DELETE FROM ${USE_TABLE} WHERE tenant = $1`, [weaviateTenant(tenantId)]);
    },

    async stageChunks(tenantId, documentId, version, embedderId, chunks: IndexedChunk[]) {
      if (chunks.length === 0) return;
      const width = chunks[0]!.vector.length;
      for (const ch of chunks) checkDimensions(ch.vector, `chunk ${ch.chunkIndex} of document ${documentId}`, embedderId === opts.embedderId() ? dimensions : width);
      // Weaviate first, Postgres second: the Postgres write advances the document's progress
      // (chunks_done), which must not count chunks that are not yet searchable everywhere.
      const target = await shardCollection(tenantId, width);
      widths.set(embedderId, width);
      for (let i = 0; i < chunks.length; i += INSERT_BATCH) {
        const batch = chunks.slice(i, i + INSERT_BATCH);
        const objects = batch.map((ch) => ({
          id: objectId(tenantId, documentId, version, embedderId, ch.chunkIndex),
          properties: { documentId, version, chunkIndex: ch.chunkIndex, text: ch.text, embedderId },
          vectors: Array.from(ch.vector),
        }));
        await onShard(target, tenantId, async (shard) => {
          const r = await shard.data.insertMany(objects);
          // insertMany reports per-object failures (an unknown or inactive tenant) instead of
          // throwing; thrown here, an inactive tenant is woken and the batch written again.
          if (r.hasErrors) {
            const errors = Object.values(r.errors);
            const messages = [...new Set(errors.map((e) => e.message))].slice(0, 5).join('; ');
            throw new Error(`weaviate index: ${errors.length} of ${batch.length} chunks of document ${documentId} v${version} were not written: ${messages}`);
          }
        });
      }
      await inner.stageChunks(tenantId, documentId, version, embedderId, chunks);
    },

    async activate(tenantId, documentId, version, info) {
      // Postgres decides (under a row lock) whether this version is still the current one.
      const ok = await inner.activate(tenantId, documentId, version, info);
      if (ok) {
        // Only OLDER versions: a newer upload may be staging right now, and its objects must
        // survive; it deletes ours when it activates, or its own when it loses.
        await deleteWhere(tenantId, Filters.and(byDocument(documentId), base.filter.byProperty('version').lessThan(version)));
      } else {
        await deleteWhere(tenantId, Filters.and(byDocument(documentId), base.filter.byProperty('version').equal(version)));
      }
      return ok;
    },

    async dropEmbedderSets(tenantId, embedderId) {
      await inner.dropEmbedderSets(tenantId, embedderId);
      await deleteWhere(tenantId, base.filter.byProperty('embedderId').equal(embedderId));
    },

    async forgetDocument(tenantId, documentId) {
      await inner.forgetDocument(tenantId, documentId);
      try {
        await deleteWhere(tenantId, byDocument(documentId));
      } catch (err) {
        // The shard is gone when the tenant was deleted: nothing is left to forget. Any other
        // failure is real and the caller retries.
        if (await tenantExists(tenantId).catch(() => true)) throw err;
      }
    },

    async keyword(tenantId, query, scope) {
      // BM25 rejects an empty query; an empty query matches nothing, as in the embedded index.
      if (query.trim() === '') return [];
      const serving = scope.embedderId ?? opts.embedderId();
      // The fallback set (documents uploaded while the serving embedder cannot be loaded) is read
      // too; keepReady keeps, per document, only the set it is searched with.
      const sets = [serving, ...(scope.fallbackEmbedderId && scope.fallbackEmbedderId !== serving ? [scope.fallbackEmbedderId] : [])];
      return ranked(tenantId, scope, async (limit) => {
        const lists = await Promise.all(
          sets.map(async (embedderId) => {
            const r = await onShard(await shardCollection(tenantId, dimsOf(embedderId)), tenantId, (shard) =>
              shard.query.bm25(query, {
                limit,
                queryProperties: ['text'],
                filters: searchFilter(scope, embedderId),
                returnProperties: RETURN_PROPS,
                returnMetadata: ['score'],
              }),
            );
            return r.objects.map((o) => toCandidate(o, o.metadata?.score ?? 0));
          }),
        );
        return lists.flat().sort((a, b) => b.score - a.score).slice(0, limit);
      });
    },

    async vector(tenantId, vector, scope) {
      const serving = scope.embedderId ?? opts.embedderId();
      if (serving === opts.embedderId()) checkDimensions(vector, 'query vector', dimensions);
      return ranked(tenantId, scope, async (limit) => {
        const r = await onShard(await shardCollection(tenantId, vector.length), tenantId, (shard) =>
          shard.query.nearVector(Array.from(vector), {
            limit,
            filters: searchFilter(scope, serving),
            returnProperties: RETURN_PROPS,
            returnMetadata: ['distance'],
          }),
        );
        // Cosine distance is 1 - cosine similarity; report the similarity, as the embedded index does.
        return r.objects.map((o) => toCandidate(o, 1 - (o.metadata?.distance ?? 1)));
      });
    },

    async hybrid(tenantId, query, vector, scope) {
      const serving = scope.embedderId ?? opts.embedderId();
      if (serving === opts.embedderId()) checkDimensions(vector, 'query vector', dimensions);
      return ranked(tenantId, scope, async (limit) => {
        // The embedder filter applies to both halves: the serving embedder's chunk set only.
        const r = await onShard(await shardCollection(tenantId, vector.length), tenantId, (shard) =>
          shard.query.hybrid(query, {
            vector: Array.from(vector),
            alpha: HYBRID_ALPHA,
            fusionType: HYBRID_FUSION,
            queryProperties: ['text'],
            limit,
            filters: searchFilter(scope, serving),
            returnProperties: RETURN_PROPS,
            returnMetadata: ['score'],
          }),
        );
        return r.objects.map((o) => toCandidate(o, o.metadata?.score ?? 0));
      });
    },

    hydrate: (tenantId, candidates) => inner.hydrate(tenantId, candidates),
    embedderIds: (tenantId) => inner.embedderIds(tenantId),

    async ping() {
      // The ready endpoint directly, with a short timeout: the client's own check waits up to its query timeout.
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(3000) });
      if (!res.ok) throw new Error(`weaviate not ready: HTTP ${res.status}`);
    },

    stats: () => ({
      kind: 'weaviate',
      tenantsLoaded: counters.active,
      tenantsActive: counters.active,
      tenantsInactive: counters.inactive,
      bytes: 0,
      budgetBytes: null,
      evictions: counters.deactivated,
      loads: counters.activated,
      idleTenantSeconds: idleSeconds,
      countedAt: counters.countedAt,
    }),

    hibernateIdleTenants: () => sweep(),

    async close() {
      clearInterval(sweepTimer);
      await sweeping?.catch(() => undefined);
      await flushUses().catch((err: unknown) => opts.onError?.(err instanceof Error ? err : new Error(String(err)), 'weaviate shard uses'));
      await inner.close();
      await client.close();
    },
  };
}

/**
 * Creates the collection unless it exists, and refuses to run on one whose configuration would
 * break isolation (multi-tenancy off, or tenants created on first write).
 */
async function ensureCollection(client: WeaviateClient, name: string): Promise<Collection<ChunkProps>> {
  if (!(await client.collections.exists(name))) {
    try {
      await client.collections.create<ChunkProps>({
        name,
        description: 'Chunks of tenant documents (tenant-rag); one Weaviate tenant per tenant-rag tenant',
        multiTenancy: configure.multiTenancy({ enabled: true, autoTenantCreation: false, autoTenantActivation: false }),
        // Vectors come from our own embedder; cosine matches the normalised embeddings.
        vectorizers: configure.vectors.selfProvided({ vectorIndexConfig: configure.vectorIndex.hnsw({ distanceMetric: 'cosine' }) }),
        properties: [
          // Identifiers are matched whole and never searched as words.
          { name: 'documentId', dataType: 'text', tokenization: 'field', indexSearchable: false, indexFilterable: true },
          { name: 'version', dataType: 'int', indexFilterable: true },
          { name: 'chunkIndex', dataType: 'int', indexFilterable: false },
          { name: 'text', dataType: 'text', tokenization: 'word', indexSearchable: true, indexFilterable: false },
          { name: 'embedderId', dataType: 'text', tokenization: 'field', indexSearchable: false, indexFilterable: true },
        ],
      });
    } catch (err) {
      // Another process created it between our check and our create.
      if (!(await client.collections.exists(name))) throw err;
    }
  }
  const base = client.collections.get<ChunkProps>(name);
  const cfg = await base.config.get();
  if (!cfg.multiTenancy.enabled || cfg.multiTenancy.autoTenantCreation) {
    throw new Error(`weaviate collection ${name} must have multi-tenancy enabled and auto tenant creation disabled`);
  }
  const have = new Set(cfg.properties.map((p) => p.name));
  const missing = ['documentId', 'version', 'chunkIndex', 'text', 'embedderId'].filter((p) => !have.has(p));
  if (missing.length) throw new Error(`weaviate collection ${name} lacks properties: ${missing.join(', ')}`);
  return base;
}
