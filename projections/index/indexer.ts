import type { Pool } from 'pg';
import { streamId } from '../../contracts/naming';
import { record } from '../../services/core/commandHandler';
import type { EventStore } from '../../services/core/eventStore';
import { chunkDocument, embeddingText } from '../../services/documents/chunking';
import { DocumentParseError, parseDocument } from '../../services/documents/parsing';
import type { ContentStore } from '../../infra/postgres/contentStore';
import { withTenant } from '../../infra/postgres/schema';
import type { Embedder } from '../../services/core/ports';
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
  /** A job whose worker died is retried after this lease. */
  leaseMs: number;
  maxAttempts: number;
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
  /** Ready documents whose vectors come from another embedder and are being re-embedded. */
  reembedding: number;
}

export interface Indexer {
  wake(): void;
  status(): Promise<IndexerStatus>;
  /** Number of queued or running jobs (for readiness and benchmarks). */
  backlog(): Promise<number>;
  stop(): Promise<void>;
}

export function startIndexer(deps: { pool: Pool; store: EventStore; content: ContentStore; index: KnowledgeIndex; embedder: Embedder }, opts: IndexerOptions): Indexer {
  const { pool, store, content, index, embedder } = deps;

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
  let stopped = false;
  const running = new Set<Job>();
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
    const r = await withTenant(pool, job.tenant_id, (c) =>
      c.query(`UPDATE document_index SET status = 'failed', error = $3, updated_at = now() WHERE document_id = $1 AND version = $2`, [job.document_id, job.version, reason]),
    );
    if (r.rowCount) await recordOutcome(job, { type: 'DocumentIndexingFailed', data: { documentId: job.document_id, version: job.version, reason } });
    await finish(job);
  }

  async function run(job: Job): Promise<void> {
    await index.ensureTenant(job.tenant_id);
    const bytes = await content.get(job.tenant_id, job.sha256);
    if (!bytes) return fail(job, 'the document content is no longer available');
    let parsed;
    try {
      parsed = await parseDocument({ filename: job.filename, bytes, declaredType: job.content_type });
    } catch (err) {
      if (err instanceof DocumentParseError) return fail(job, err.reason);
      throw err;
    }
    const chunks = chunkDocument(parsed, { maxTokens: opts.maxTokens, overlapTokens: opts.overlapTokens, countTokens: (s) => embedder.countTokens(s) });
    if (chunks.length === 0) return fail(job, 'the document contains no text');
    await withTenant(pool, job.tenant_id, (c) =>
      c.query(`UPDATE document_index SET chunks_total = $3, chunks_done = 0, updated_at = now() WHERE document_id = $1 AND version = $2`, [
        job.document_id, job.version, chunks.length,
      ]),
    );
    for (let i = 0; i < chunks.length; i += opts.embedBatch) {
      if (stopped) throw new Error('indexer stopping');
      const batch = chunks.slice(i, i + opts.embedBatch);
      const vectors = await embedder.embed(batch.map(embeddingText), 'passage');
      await index.stageChunks(
        job.tenant_id,
        job.document_id,
        job.version,
        embedder.id,
        batch.map((ch, k) => ({ chunkIndex: ch.index, text: ch.text, headingPath: ch.headingPath, page: ch.page, tokenCount: ch.tokenCount, vector: vectors[k]! })),
      );
    }
    // A re-run of the same version (e.g. re-embedding with another model, whose tokenizer may cut
    // differently) may leave chunks past the new end: they must not outlive this version's set.
    await withTenant(pool, job.tenant_id, (c) => c.query('DELETE FROM chunks WHERE document_id = $1 AND version = $2 AND chunk_index >= $3', [job.document_id, job.version, chunks.length]));
    const ok = await index.activate(job.tenant_id, job.document_id, job.version, { chunkCount: chunks.length, embedderId: embedder.id, format: parsed.format });
    if (!ok) log('info', 'indexed version superseded; discarded', { tenantId: job.tenant_id, documentId: job.document_id, version: job.version });
    else
      await recordOutcome(job, {
        type: 'DocumentIndexed',
        data: { documentId: job.document_id, version: job.version, chunkCount: chunks.length, embedderId: embedder.id, format: parsed.format },
      });
    await finish(job);
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
        running.add(job);
        await run(job).finally(() => running.delete(job!));
        log('info', 'document indexed', { tenantId: job.tenant_id, documentId: job.document_id, version: job.version, ms: Date.now() - started, worker: n });
      } catch (err) {
        if (stopped) return;
        const msg = (err as Error).message;
        log('error', 'indexing failed', { tenantId: job?.tenant_id, documentId: job?.document_id, error: msg });
        if (job && job.attempts >= opts.maxAttempts) {
          await fail(job, 'indexing failed repeatedly; upload the document again').catch(() => undefined);
        } else if (job) {
          await pool
            .query(`UPDATE platform.index_jobs SET state = 'queued', locked_until = NULL WHERE tenant_id = $1 AND document_id = $2 AND version = $3`, [
              job.tenant_id, job.document_id, job.version,
            ])
            .catch(() => undefined);
        }
        await sleep(1000);
      }
    }
  }

  /**
   * When the embedder changed (another model, or the model files appeared), every ready document
   * whose vectors come from another embedder is queued again, fairly with the rest. Search never
   * mixes two models: the vector index serves only vectors of the current embedder, so during the
   * re-embedding a document not yet done is found by keyword only, never by foreign vectors.
   */
  async function queueReembedding(): Promise<number> {
    const tenants = await pool.query<{ tenant_id: string }>(`SELECT tenant_id FROM platform.tenants WHERE status = 'active'`);
    let queued = 0;
    for (const { tenant_id } of tenants.rows) {
      const stale = await withTenant(
        pool,
        tenant_id,
        async (c) =>
          (
            await c.query<{ document_id: string; version: number; sha256: string; filename: string; content_type: string }>(
              `SELECT d.document_id, d.version, d.sha256, d.filename, d.content_type FROM documents d
               JOIN document_index di ON di.document_id = d.document_id AND di.ready_version = d.version
               WHERE di.status = 'ready' AND di.embedder_id IS DISTINCT FROM $1`,
              [embedder.id],
            )
          ).rows,
        { readOnly: true },
      ).catch(() => []);
      for (const d of stale) {
        const r = await pool.query(
          `INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, document_id) DO NOTHING`,
          [tenant_id, d.document_id, d.version, d.sha256, d.filename, d.content_type],
        );
        queued += r.rowCount ?? 0;
      }
    }
    if (queued) log('info', 're-embedding documents indexed by another embedder', { embedder: embedder.id, documents: queued });
    return queued;
  }

  let reembedQueued = 0;
  const reembedding = queueReembedding().then(
    (n) => void (reembedQueued = n),
    (err) => log('error', 'could not queue re-embedding', { error: (err as Error).message }),
  );
  const workers = Array.from({ length: Math.max(1, opts.concurrency) }, (_, n) => reembedding.then(() => worker(n)));

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
      await Promise.allSettled(workers);
      // Jobs this process had claimed go back to the queue for the next start.
      for (const job of running) {
        await pool
          .query(`UPDATE platform.index_jobs SET state = 'queued', locked_until = NULL WHERE tenant_id = $1 AND document_id = $2 AND version = $3`, [
            job.tenant_id, job.document_id, job.version,
          ])
          .catch(() => undefined);
      }
    },
  };
}
