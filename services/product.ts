import type { Server } from 'node:http';
import pino from 'pino';
import { createEmbedder } from '../infra/embeddings';
import { createPostgresEventStore } from '../infra/eventstore/postgres';
import { createOpenAIAnswerer } from '../infra/llm/openaiAnswerer';
import { createPostgresContentStore } from '../infra/postgres/contentStore';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../infra/postgres/embedded';
import { createPool } from '../infra/postgres/pool';
import { migratePlatform } from '../infra/postgres/schema';
import { createEmbeddedIndex } from '../infra/vectors/embedded';
import { catalogProjection } from '../projections/catalog/catalogProjection';
import { startIndexer } from '../projections/index/indexer';
import { platformProjection } from '../projections/platform/platformProjection';
import { type RunningProjection, startProjection } from '../projections/runner';
import { createExtractiveAnswerer } from './ask/extractive';
import type { Env } from './config';
import { createApp } from './gateway/app';
import type { AppDeps } from './gateway/context';
import { createMemoryIdempotencyStore } from './gateway/idempotency';
import { createMemoryRateLimiter } from './gateway/rateLimit';
import { join } from 'node:path';

export interface Product {
  app: ReturnType<typeof createApp>;
  deps: AppDeps;
  listen(port: number, host: string): Promise<Server>;
  stop(): Promise<void>;
}

/** Composition root: wires adapters chosen by configuration into one running product. */
export async function startProduct(env: Env, opts: { logger?: pino.Logger } = {}): Promise<Product> {
  const logger = opts.logger ?? pino({ level: env.logLevel, base: { service: 'tenant-rag' } });
  const log: AppDeps['log'] = (level, msg, extra) => logger[level](extra ?? {}, msg);
  const stops: (() => Promise<void>)[] = [];

  let embedded: EmbeddedPostgres | null = null;
  let databaseUrl = env.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres({ dataDir: join(env.dataDir, 'postgres'), port: env.embeddedPgPort, log: (m) => log('info', m) });
    databaseUrl = embedded.url;
    log('info', 'embedded PostgreSQL started', { port: embedded.port, dataDir: embedded.dataDir });
  }
  const pool = createPool(databaseUrl, { max: 16 });
  stops.push(async () => {
    await pool.end();
    await embedded?.stop();
  });
  await migratePlatform(pool);

  const store = await createPostgresEventStore(pool);
  stops.push(() => store.close());
  const content = createPostgresContentStore(pool);

  const { embedder, degraded } = await createEmbedder({
    openai: env.openai?.embeddingModel ? { baseURL: env.openai.baseURL, apiKey: env.openai.apiKey, model: env.openai.embeddingModel } : undefined,
    modelDir: env.modelDir,
    workers: env.embedWorkers,
    threads: env.embedThreads,
    batchSize: env.embedBatch,
    log: (level, msg) => log(level, msg),
  });
  stops.push(() => embedder.close());
  if (degraded) log('warn', degraded);
  log('info', 'embedder ready', { embedder: embedder.id, semantic: embedder.semantic });

  const index = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
  const answerer = env.openai
    ? createOpenAIAnswerer({ baseURL: env.openai.baseURL, apiKey: env.openai.apiKey, model: env.openai.chatModel, timeoutMs: 60_000, maxRetries: 2 })
    : createExtractiveAnswerer();
  const limiter = createMemoryRateLimiter();

  const tenantListeners: ((tenantId: string) => void)[] = [];
  const indexer = startIndexer(
    { pool, content, index, embedder },
    { concurrency: env.indexConcurrency, embedBatch: Math.max(env.embedBatch, 16) * 4, maxTokens: 256, overlapTokens: 32, leaseMs: 10 * 60_000, maxAttempts: 3, log },
  );
  const projections: Record<string, RunningProjection> = {
    platform: startProjection(
      store,
      pool,
      platformProjection({
        onTenantChanged: (t) => tenantListeners.forEach((l) => l(t)),
        onTenantDeleted: (t) => {
          void index.dropTenant(t);
          void content.deleteTenant(t);
          void limiter.forgetPrefix(`tr:${t}:`);
        },
      }),
      { log },
    ),
    catalog: startProjection(store, pool, catalogProjection({ onEnqueued: () => indexer.wake(), onDeleted: (t, d) => void index.forgetDocument(t, d) }), { log }),
  };
  stops.unshift(async () => {
    await indexer.stop();
    await Promise.all(Object.values(projections).map((p) => p.stop()));
  });

  const deps: AppDeps = {
    config: env.config,
    store,
    pool,
    content,
    index,
    embedder,
    embedderDegraded: degraded,
    answerer,
    limiter,
    idempotency: createMemoryIdempotencyStore(),
    projections,
    now: () => new Date(),
    onTenantChanged: () => undefined,
    log,
    readiness: async () => {
      const check = async (adapter: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
          return { ok: true, adapter };
        } catch (err) {
          return { ok: false, adapter, detail: (err as Error).message };
        }
      };
      const proj = Object.fromEntries(
        Object.values(projections).map((p) => {
          const s = p.status();
          return [`projection:${s.name}`, { ok: s.state !== 'failed', adapter: `v${s.version} ${s.state}`, detail: s.error ?? `position ${s.position || '0'}` }];
        }),
      );
      return {
        postgres: await check(embedded ? 'embedded-postgres' : 'postgres (DATABASE_URL)', () => pool.query('SELECT 1')),
        event_store: await check(store.kind, () => store.ping()),
        vector_index: await check(index.kind, () => index.ping()),
        bus: { ok: true, adapter: 'in-process (store subscription)' },
        rate_limiter: { ok: true, adapter: limiter.kind },
        embedder: { ok: true, adapter: embedder.id, ...(degraded ? { detail: degraded } : {}) },
        answerer: { ok: true, adapter: answerer.id },
        ...proj,
      };
    },
  };
  const app = createApp(deps);
  // createApp wraps onTenantChanged with its auth-cache invalidation; projections call the result.
  tenantListeners.push((t) => deps.onTenantChanged(t));

  let server: Server | null = null;
  return {
    app,
    deps,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        const s = app.listen(port, host, () => resolve(s));
        s.on('error', reject);
        server = s;
      });
    },
    async stop() {
      if (server) {
        const s = server as Server;
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeIdleConnections?.();
          setTimeout(() => s.closeAllConnections?.(), 5000).unref();
        });
      }
      for (const stop of stops) await stop().catch((err) => log('error', 'shutdown step failed', { error: (err as Error).message }));
    },
  };
}
