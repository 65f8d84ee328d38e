import type { Pool } from 'pg';
import { streamId } from '../../contracts/naming';
import { record } from '../../services/core/commandHandler';
import type { EventStore } from '../../services/core/eventStore';
import { embeddingText } from '../../services/documents/chunking';
import { DocumentParseError } from '../../services/documents/parsing';
import { createDocumentPreparer, type DocumentPreparer, type Prepared } from '../../services/documents/prepare';
import type { ContentStore } from '../../infra/postgres/contentStore';
import { tenantSchemaExists, withTenant } from '../../infra/postgres/schema';
import type { Embedder } from '../../services/core/ports';
import type { EmbedderRegistry } from '../../infra/embeddings';
import { servingFromData, type ServingEmbedders } from './servingEmbedders';
import { chunkerId, findChunkSet, forgetChunkSets, readChunkSet, recordChunkSet, recordServedSet } from './chunkSets';
import { fromBytes } from '../../infra/vectors/embedded';
import type { KnowledgeIndex } from '../../services/search/knowledgeIndex';

/**
 * Indexing workers: parse, chunk and embed queued document versions off the request path and
 * off the ordered projection, fairly across tenants (a tenant with a job running yields to
 * tenants with none), then make the version searchable in one step (KnowledgeIndex.activate).
 * Jobs live in platform.index_jobs, claimed with SKIP LOCKED, so several processes can share them.
 */
export interface IndexerOptions {
  concurrency: number;
  embedBatch: number;
  maxTokens: number;
  overlapTokens: number;
  /** A job whose worker died is retried after this lease (renewed every third of it while the job runs). */
  leaseMs: number;
  maxAttempts: number;
  /** How long the old chunk sets outlive a tenant's switch (searches in flight still read them). Default 10 s. */
  switchGraceMs?: number;
  /** How often re-embedding progress is checked for a switch. Default 1 s. */
  reembedCheckMs?: number;
  log?: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;
}

interface Job {
  record_outcome: boolean;
  tenant_id: string;
  document_id: string;
  version: number;
  sha256: string;
  filename: string;
  content_type: string;
  attempts: number;
}

export interface IndexerStatus {
  embedder: string;
  queued: number;
  running: number;
  /** Ready documents queued at start for a re-embedding with this embedder. */
  reembedding: number;
}

export interface Indexer {
  wake(): void;
  status(): Promise<IndexerStatus>;
  /** Number of queued or running jobs (for readiness and benchmarks). */
  backlog(): Promise<number>;
  stop(): Promise<void>;
}

export function startIndexer(
  deps: { pool: Pool; store: EventStore; content: ContentStore; index: KnowledgeIndex; embedder: Embedder; registry?: EmbedderRegistry; preparer?: DocumentPreparer; serving?: ServingEmbedders },
  opts: IndexerOptions,
): Indexer {
  const { pool, store, content, index, embedder } = deps;
  const loadEmbedder = (id: string): Promise<Embedder | null> => (id === embedder.id ? Promise.resolve(embedder) : deps.registry?.get(id) ?? Promise.resolve(null));
  const graceMs = opts.switchGraceMs ?? 10_000;

  /** Indexing outcomes are facts too: audit and analytics consume them. */
  async function recordOutcome(job: Job, event: { type: 'DocumentIndexed' | 'DocumentIndexingFailed'; data: Record<string, unknown> }): Promise<void> {
    if (!job.record_outcome) return;
    await record(store, streamId('document', job.tenant_id, job.document_id), {
      tenantId: job.tenant_id,
      actor: 'system:indexer',
      correlationId: `index:${job.document_id}:${job.version}`,
      now: new Date(),
    }, [event]).catch((err) => log('warn', 'could not record indexing outcome', { error: (err as Error).message }));
  }
  const log = opts.log ?? (() => undefined);
  // Parsing and chunking run in a worker thread: token counting a large file takes seconds.
  const preparer = deps.preparer ?? createDocumentPreparer({ log: (level, msg, extra) => log(level, msg, extra) });
  void preparer.warmUp(embedder).catch((err) => log('warn', 'document preparer warm-up failed', { error: (err as Error).message }));
  let stopped = false;
  const sleepers = new Set<() => void>();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      sleepers.add(done);
    });

  async function claim(): Promise<Job | null> {
    const r = await pool.query<Job>(
      `UPDATE platform.index_jobs j SET state = 'running', attempts = j.attempts + 1, locked_until = now() + ($1 || ' milliseconds')::interval
       WHERE (j.tenant_id, j.document_id) = (
         SELECT q.tenant_id, q.document_id FROM platform.index_jobs q
         WHERE q.state = 'queued' OR q.locked_until < now()
         ORDER BY (SELECT count(*) FROM platform.index_jobs r WHERE r.tenant_id = q.tenant_id AND r.state = 'running' AND r.locked_until >= now()),
                  q.enqueued_at
         LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING j.tenant_id, j.document_id, j.version, j.sha256, j.filename, j.content_type, j.attempts, j.record_outcome`,
      [String(opts.leaseMs)],
    );
    return r.rows[0] ?? null;
  }

  async function finish(job: Job): Promise<void> {
    // A newer version may have been queued meanwhile: it keeps its row.
    await pool.query('DELETE FROM platform.index_jobs WHERE tenant_id = $1 AND document_id = $2 AND version = $3', [job.tenant_id, job.document_id, job.version]);
  }

  async function fail(job: Job, reason: string): Promise<void> {
    const r = await withTenant(pool, job.tenant_id, async (c) => {
      const failed = await c.query(
        `UPDATE document_index SET status = 'failed', error = $3, updated_at = now() WHERE document_id = $1 AND version = $2 AND ready_version IS DISTINCT FROM $2`,
        [job.document_id, job.version, reason],
      );
      // A re-embedding of the served version failed: the document stays ready on its served set
      // (the tenant's switch waits for it; the reason shows on the document).
      if (!failed.rowCount) {
        await c.query(`UPDATE document_index SET error = $3, updated_at = now() WHERE document_id = $1 AND ready_version = $2`, [job.document_id, job.version, `re-embedding failed: ${reason}`]);
      }
      return failed;
    });
    if (r.rowCount) await recordOutcome(job, { type: 'DocumentIndexingFailed', data: { documentId: job.document_id, version: job.version, reason } });
    await finish(job);
  }

  const chunker = chunkerId(opts);

  async function run(job: Job): Promise<void> {
    await index.ensureTenant(job.tenant_id);
    // Read only when a set must be derived from it (a cached set is copied without it).
    let bytes: Buffer | null | undefined;
    const contentOf = async () => (bytes === undefined ? (bytes = await content.get(job.tenant_id, job.sha256)) : bytes);
    // Parsed and chunked for each target embedder's tokenizer (see below), off this thread.
    const prepare = async (target: Embedder): Promise<Prepared | string> => {
      const body = await contentOf();
      if (!body) return 'the document content is no longer available';
      try {
        return await preparer.prepare({ filename: job.filename, bytes: body, declaredType: job.content_type }, { maxTokens: opts.maxTokens, overlapTokens: opts.overlapTokens, embedder: target });
      } catch (err) {
        if (err instanceof DocumentParseError) return err.reason;
        throw err;
      }
    };
    // The sets this version needs: the tenant's serving embedder's (searchable at once) and, during
    // a re-embedding, the new embedder's too, so that an upload never waits for the switch nor
    // holds it back. A re-embedding job of the served version only builds the missing sets.
    const doc = await withTenant(pool, job.tenant_id, async (c) =>
      (await c.query<{ ready_version: number | null; embedder_sets: string[] }>('SELECT ready_version, embedder_sets FROM document_index WHERE document_id = $1', [job.document_id])).rows[0],
    );
    const served = doc?.ready_version === job.version;
    const all = await targetEmbedders(job.tenant_id);
    const targets = all.filter((e) => !(served && doc?.embedder_sets.includes(e.id)));
    // Sets served already: listed in the chunk-set cache if they are not yet (a catalog rebuild re-links them).
    for (const e of all) if (!targets.includes(e)) await recordServedSet(pool, job.tenant_id, job.document_id, job.version, e.id, job.sha256);
    let outcome: { chunkCount: number; embedderId: string; format: string } | null = null;
    for (const target of targets) {
      // The same content chunked by this chunker for this embedder already (this document before a
      // rebuild of the catalog, or another document with the same bytes): copied, not embedded.
      const cached = await findChunkSet(pool, job.tenant_id, { sha256: job.sha256, chunker, embedderId: target.id });
      let chunkCount: number;
      let format: string;
      if (cached) {
        chunkCount = cached.chunkCount;
        format = cached.format ?? 'text';
        if (!served && !outcome) await setChunksTotal(job, chunkCount);
        const rows = await readChunkSet(pool, job.tenant_id, { documentId: cached.documentId, version: cached.version, embedderId: target.id });
        for (let i = 0; i < rows.length; i += opts.embedBatch) {
          if (stopped) throw new Error('indexer stopping');
          const batch = rows.slice(i, i + opts.embedBatch);
          await index.stageChunks(
            job.tenant_id,
            job.document_id,
            job.version,
            target.id,
            batch.map((r) => ({ chunkIndex: r.chunk_index, text: r.text, headingPath: r.heading_path ?? [], page: r.page, tokenCount: r.token_count, vector: fromBytes(r.embedding) })),
          );
        }
      } else {
        const prepared = await prepare(target);
        if (typeof prepared === 'string') return fail(job, prepared);
        const chunks = prepared.chunks;
        if (chunks.length === 0) return fail(job, 'the document contains no text');
        chunkCount = chunks.length;
        format = prepared.format;
        if (!served && !outcome) await setChunksTotal(job, chunkCount);
        // Embedding of the next batch overlaps the write of the previous one (writes stay in order).
        let writing: Promise<void> | null = null;
        for (let i = 0; i < chunks.length; i += opts.embedBatch) {
          if (stopped) throw new Error('indexer stopping');
          const batch = chunks.slice(i, i + opts.embedBatch);
          const vectors = await target.embed(batch.map(embeddingText), 'passage');
          if (writing) await writing;
          writing = index.stageChunks(
            job.tenant_id,
            job.document_id,
            job.version,
            target.id,
            batch.map((ch, k) => ({ chunkIndex: ch.index, text: ch.text, headingPath: ch.headingPath, page: ch.page, tokenCount: ch.tokenCount, vector: vectors[k]! })),
          );
          writing.catch(() => undefined); // awaited above or below; not an unhandled rejection meanwhile
        }
        if (writing) await writing;
      }
      // A re-run of the same version and embedder may leave chunks past the new end: they must not outlive this set.
      await withTenant(pool, job.tenant_id, (c) =>
        c.query('DELETE FROM chunks WHERE document_id = $1 AND version = $2 AND embedder_id = $3 AND chunk_index >= $4', [job.document_id, job.version, target.id, chunkCount]),
      );
      // The tenant may have switched away from this embedder while we embedded: never activate
      // the set. Within the grace period the pending drop removes what is left of it in the index;
      // after it, nothing reads that embedder's sets any more.
      const targeted = await stillTargeted(job.tenant_id, target.id);
      if (targeted !== 'yes') {
        if (targeted === 'no') await dropSets(job.tenant_id, target.id);
        else await withTenant(pool, job.tenant_id, (c) => c.query('DELETE FROM chunks WHERE document_id = $1 AND version = $2 AND embedder_id = $3', [job.document_id, job.version, target.id]));
        continue;
      }
      // In the cache before the activation: a catalog switch that sees the one sees the other.
      await recordChunkSet(pool, job.tenant_id, { documentId: job.document_id, version: job.version, embedderId: target.id, sha256: job.sha256, chunker, chunkCount, format });
      const info = { chunkCount, embedderId: target.id, format };
      const ok = await index.activate(job.tenant_id, job.document_id, job.version, info);
      // Activating a new version dropped the other versions' chunks: their cache entries go too.
      if (ok && !served) await forgetChunkSets(pool, job.tenant_id, { documentId: job.document_id, exceptVersion: job.version });
      if (!ok) {
        log('info', 'indexed version superseded; discarded', { tenantId: job.tenant_id, documentId: job.document_id, version: job.version });
        break;
      }
      outcome ??= info;
    }
    if (outcome) await recordOutcome(job, { type: 'DocumentIndexed', data: { documentId: job.document_id, version: job.version, ...outcome } });
    await finish(job);
  }

  /** Drops one embedder's chunk sets of a tenant, in the index and in its chunk-set cache. */
  async function dropSets(tenantId: string, embedderId: string): Promise<void> {
    await index.dropEmbedderSets(tenantId, embedderId);
    if (await tenantSchemaExists(pool, tenantId)) await forgetChunkSets(pool, tenantId, { embedderId });
  }

  async function setChunksTotal(job: Job, total: number): Promise<void> {
    await withTenant(pool, job.tenant_id, (c) =>
      c.query(`UPDATE document_index SET chunks_total = $3, chunks_done = 0, updated_at = now() WHERE document_id = $1 AND version = $2`, [job.document_id, job.version, total]),
    );
  }

  async function worker(n: number): Promise<void> {
    while (!stopped) {
      let job: Job | null = null;
      try {
        job = await claim();
        if (!job) {
          await sleep(500);
          continue;
        }
        const started = Date.now();
        // The lease is renewed while the job runs, so it can be short: a worker that dies (kill -9,
        // or a requeue that failed because the database was down) holds the job one lease at most.
        const held = job;
        const renew = setInterval(() => {
          void pool
            .query(`UPDATE platform.index_jobs SET locked_until = now() + ($4 || ' milliseconds')::interval WHERE tenant_id = $1 AND document_id = $2 AND version = $3 AND state = 'running'`, [
              held.tenant_id, held.document_id, held.version, String(opts.leaseMs),
            ])
            .catch(() => undefined);
        }, Math.max(250, Math.floor(opts.leaseMs / 3)));
        renew.unref?.();
        await run(job).finally(() => clearInterval(renew));
        log('info', 'document indexed', { tenantId: job.tenant_id, documentId: job.document_id, version: job.version, ms: Date.now() - started, worker: n });
      } catch (err) {
        // Interrupted by stop(): the job goes back to the queue at once (not after its lease), and
        // the interrupted attempt does not count against the document.
        if (stopped) {
          if (job) await requeue(job, false).catch(() => undefined);
          return;
        }
        const msg = (err as Error).message;
        log('error', 'indexing failed', { tenantId: job?.tenant_id, documentId: job?.document_id, error: msg });
        // An outage of the vector index or the database is not the document's fault: that attempt
        // does not count and the job is retried until they answer (a Weaviate restart failed the
        // documents it caught mid-indexing after three retries a second apart).
        const dependenciesAnswer = job ? await Promise.all([pool.query('SELECT 1'), index.ping()]).then(() => true, () => false) : true;
        if (job && dependenciesAnswer && job.attempts >= opts.maxAttempts) {
          await fail(job, 'indexing failed repeatedly; upload the document again').catch(() => undefined);
        } else if (job) {
          await requeue(job, dependenciesAnswer).catch(() => undefined);
        }
        await sleep(1000);
      }
    }
  }

  /** Puts a claimed job back in the queue; `countAttempt` false gives back the attempt its claim took. */
  function requeue(job: Job, countAttempt: boolean) {
    return pool.query(
      `UPDATE platform.index_jobs SET state = 'queued', locked_until = NULL, attempts = attempts - CASE WHEN $4::boolean THEN 0 ELSE 1 END
       WHERE tenant_id = $1 AND document_id = $2 AND version = $3 AND state = 'running'`,
      [job.tenant_id, job.document_id, job.version, countAttempt],
    );
  }

  /** The embedders a tenant's documents are indexed with: serving first, then the one being built. */
  async function targetEmbedders(tenantId: string): Promise<Embedder[]> {
    const r = await pool.query<{ serving_embedder: string; building_embedder: string | null }>(
      'SELECT serving_embedder, building_embedder FROM platform.tenant_embedders WHERE tenant_id = $1',
      [tenantId],
    );
    const row = r.rows[0];
    if (!row) return [embedder];
    const out: Embedder[] = [];
    for (const id of new Set([row.serving_embedder, row.building_embedder])) {
      if (!id) continue;
      const e = await loadEmbedder(id);
      // A serving embedder that cannot be loaded: the new version gets the building set only and
      // is found by keyword (the fallback set) until the switch.
      if (e) out.push(e);
    }
    return out.length ? out : [embedder];
  }

  async function stillTargeted(tenantId: string, embedderId: string): Promise<'yes' | 'dropping' | 'no'> {
    const r = await pool.query<{ serving_embedder: string; building_embedder: string | null; drop_embedders: string[] }>(
      'SELECT serving_embedder, building_embedder, drop_embedders FROM platform.tenant_embedders WHERE tenant_id = $1',
      [tenantId],
    );
    const row = r.rows[0];
    if (!row) return embedderId === embedder.id ? 'yes' : 'no';
    if (row.serving_embedder === embedderId || row.building_embedder === embedderId) return 'yes';
    return row.drop_embedders.includes(embedderId) ? 'dropping' : 'no';
  }

  /**
   * At start: for every tenant (and snapshot) whose serving embedder is not the configured one,
   * make the configured one the building embedder and queue every ready document that has no set
   * of it. Search keeps using the serving embedder's sets meanwhile (see servingEmbedders.ts).
   */
  async function beginReembedding(): Promise<number> {
    const scopes = await pool.query<{ tenant_id: string; record: boolean }>(
      `SELECT tenant_id, true AS record FROM platform.tenants WHERE status = 'active'
       UNION ALL SELECT snapshot_id, false FROM platform.snapshots`,
    );
    let queued = 0;
    for (const { tenant_id, record: recordOutcome } of scopes.rows) {
      const row = (
        await pool.query<{ serving_embedder: string; building_embedder: string | null }>(
          'SELECT serving_embedder, building_embedder FROM platform.tenant_embedders WHERE tenant_id = $1',
          [tenant_id],
        )
      ).rows[0];
      // No row yet (a tenant provisioned since the last start): served by what its documents hold.
      const serving = row?.serving_embedder ?? (await servingFromData(pool, tenant_id, embedder.id));
      if (!serving) continue; // no schema (yet)
      const building = serving === embedder.id ? null : embedder.id;
      const abandoned = row?.building_embedder && row.building_embedder !== building ? [row.building_embedder] : [];
      const loadable = (await loadEmbedder(serving)) !== null;
      await pool.query(
        `INSERT INTO platform.tenant_embedders (tenant_id, serving_embedder, serving_loadable, building_embedder, started_at, drop_embedders, drop_after)
         VALUES ($1, $2, $3, $4, CASE WHEN $4::text IS NOT NULL THEN now() END, $5, now())
         ON CONFLICT (tenant_id) DO UPDATE SET serving_embedder = EXCLUDED.serving_embedder, serving_loadable = EXCLUDED.serving_loadable,
           building_embedder = EXCLUDED.building_embedder,
           started_at = CASE WHEN EXCLUDED.building_embedder IS DISTINCT FROM platform.tenant_embedders.building_embedder THEN EXCLUDED.started_at
                             ELSE platform.tenant_embedders.started_at END,
           drop_embedders = platform.tenant_embedders.drop_embedders || EXCLUDED.drop_embedders,
           drop_after = LEAST(platform.tenant_embedders.drop_after, EXCLUDED.drop_after), updated_at = now()`,
        [tenant_id, serving, loadable, building, abandoned],
      );
      deps.serving?.invalidate(tenant_id);
      if (!building) continue;
      if (!loadable) {
        log('warn', 're-embedding: the serving embedder cannot be loaded; the tenant answers by keyword over its old chunks until the switch', {
          tenantId: tenant_id, serving, building,
        });
      }
      const stale = await withTenant(
        pool,
        tenant_id,
        async (c) =>
          (
            await c.query<{ document_id: string; version: number; sha256: string; filename: string; content_type: string }>(
              `SELECT d.document_id, d.version, d.sha256, d.filename, d.content_type FROM documents d
               JOIN document_index di ON di.document_id = d.document_id AND di.ready_version = d.version
               WHERE NOT ($1::text = ANY(di.embedder_sets))`,
              [building],
            )
          ).rows,
        { readOnly: true },
      );
      for (const d of stale) {
        const r = await pool.query(
          `INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type, record_outcome)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, document_id) DO NOTHING`,
          [tenant_id, d.document_id, d.version, d.sha256, d.filename, d.content_type, recordOutcome],
        );
        queued += r.rowCount ?? 0;
      }
      log('info', 're-embedding: building the new embedder\'s chunk sets beside the served ones', { tenantId: tenant_id, serving, building, documents: stale.length });
    }
    return queued;
  }

  /**
   * Switches every tenant whose ready documents all have a set of the building embedder (one
   * UPDATE: searches read either the old or the new serving id, never a mix), records progress
   * otherwise, and drops switched-away sets once the grace period is over.
   */
  async function advanceReembedding(): Promise<void> {
    const rows = (
      await pool.query<{ tenant_id: string; serving_embedder: string; building_embedder: string | null; drop_embedders: string[]; due: boolean }>(
        `SELECT tenant_id, serving_embedder, building_embedder, drop_embedders, drop_after <= now() AS due FROM platform.tenant_embedders
         WHERE building_embedder IS NOT NULL OR cardinality(drop_embedders) > 0`,
      )
    ).rows;
    for (const row of rows) {
      if (!(await tenantSchemaExists(pool, row.tenant_id))) {
        // The tenant (or snapshot) was deleted: nothing left to build or drop.
        await pool.query('DELETE FROM platform.tenant_embedders WHERE tenant_id = $1', [row.tenant_id]);
        continue;
      }
      if (row.building_embedder) {
        const counts = await withTenant(
          pool,
          row.tenant_id,
          async (c) =>
            (
              await c.query<{ total: string; done: string }>(
                `SELECT count(*) AS total, count(*) FILTER (WHERE $1::text = ANY(embedder_sets)) AS done FROM document_index WHERE ready_version IS NOT NULL`,
                [row.building_embedder],
              )
            ).rows[0],
          { readOnly: true },
        ).catch(() => undefined);
        if (!counts) continue;
        const done = Number(counts.done);
        const total = Number(counts.total);
        if (done >= total) {
          const r = await pool.query(
            `UPDATE platform.tenant_embedders SET serving_embedder = building_embedder, serving_loadable = true, building_embedder = NULL,
               docs_done = $3, docs_total = $4, switched_at = now(), drop_embedders = array_append(drop_embedders, serving_embedder),
               drop_after = now() + ($5 || ' milliseconds')::interval, updated_at = now()
             WHERE tenant_id = $1 AND building_embedder = $2`,
            [row.tenant_id, row.building_embedder, done, total, String(graceMs)],
          );
          if (r.rowCount) deps.serving?.invalidate(row.tenant_id);
          if (r.rowCount) log('info', 're-embedding complete: tenant switched to the new embedder', { tenantId: row.tenant_id, from: row.serving_embedder, to: row.building_embedder, documents: total });
        } else {
          await pool.query('UPDATE platform.tenant_embedders SET docs_done = $3, docs_total = $4, updated_at = now() WHERE tenant_id = $1 AND building_embedder = $2', [
            row.tenant_id, row.building_embedder, done, total,
          ]);
        }
      } else if (row.due) {
        const drop = row.drop_embedders.filter((e) => e !== row.serving_embedder);
        for (const e of drop) await dropSets(row.tenant_id, e);
        await pool.query(`UPDATE platform.tenant_embedders SET drop_embedders = '{}', updated_at = now() WHERE tenant_id = $1 AND drop_embedders = $2`, [row.tenant_id, row.drop_embedders]);
        if (drop.length) log('info', 're-embedding: old chunk sets dropped', { tenantId: row.tenant_id, embedders: drop });
      }
    }
  }

  async function reembedLoop(): Promise<void> {
    while (!stopped) {
      await advanceReembedding().catch((err) => log('error', 're-embedding check failed', { error: (err as Error).message }));
      await sleep(opts.reembedCheckMs ?? 1000);
    }
  }

  let reembedQueued = 0;
  const reembedding = beginReembedding().then(
    (n) => void (reembedQueued = n),
    (err) => log('error', 'could not queue re-embedding', { error: (err as Error).message }),
  );
  const workers = [
    ...Array.from({ length: Math.max(1, opts.concurrency) }, (_, n) => reembedding.then(() => worker(n))),
    reembedding.then(() => reembedLoop()),
  ];

  return {
    wake() {
      for (const s of [...sleepers]) s();
    },
    async status() {
      const r = await pool.query<{ queued: string; running: string }>(
        `SELECT count(*) FILTER (WHERE state = 'queued') AS queued, count(*) FILTER (WHERE state = 'running') AS running FROM platform.index_jobs`,
      );
      return { embedder: embedder.id, queued: Number(r.rows[0]?.queued ?? 0), running: Number(r.rows[0]?.running ?? 0), reembedding: reembedQueued };
    },
    async backlog() {
      const r = await pool.query<{ n: string }>('SELECT count(*) AS n FROM platform.index_jobs');
      return Number(r.rows[0]?.n ?? 0);
    },
    async stop() {
      stopped = true;
      for (const s of [...sleepers]) s();
      // A document being read is abandoned (its job goes back to the queue below).
      if (!deps.preparer) await preparer.close();
      // Each worker puts the job it was interrupted in back in the queue before it ends.
      await Promise.allSettled(workers);
    },
  };
}
