import type { Server } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import { createKafkaBus } from '../infra/bus/kafka';
import { type Relay, startRelay } from '../infra/bus/relay';
import { createEmbedder, createEmbedderRegistry, type EmbedderConfig } from '../infra/embeddings';
import { ensureServingRows, servingEmbedders } from '../projections/index/servingEmbedders';
import { createPostgresEventStore } from '../infra/eventstore/postgres';
import { createOpenAIAnswerer } from '../infra/llm/openaiAnswerer';
import { createPostgresContentStore } from '../infra/postgres/contentStore';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../infra/postgres/embedded';
import { createPool } from '../infra/postgres/pool';
import { migratePlatform, migrateTenantSchemas } from '../infra/postgres/schema';
import { createEmbeddedIndex } from '../infra/vectors/embedded';
import { catalogProjection } from '../projections/catalog/catalogProjection';
import { clearCatalogVersion, retireCatalogVersion, switchCatalog } from '../projections/catalog/catalogRebuild';
import { startIndexer, type Indexer } from '../projections/index/indexer';
import { platformProjection } from '../projections/platform/platformProjection';
import { ANALYTICS_VERSION, analyticsProjection } from '../projections/analytics/analyticsProjection';
import { AUDIT_VERSION, auditProjection } from '../projections/audit/auditProjection';
import { type ProjectionDefinition, startProjections } from '../projections/manager';
import { createExtractiveAnswerer } from './ask/extractive';
import { redisKey } from '../contracts/naming';
import type { Env } from './config';
import type { EventBus } from './core/eventBus';
import type { EventStore } from './core/eventStore';
import { appendObservers } from './core/commandHandler';
import { createApp, eventsAppended } from './gateway/app';
import { createActivityRecorder } from './queries/activity';
import { dropSnapshots } from './snapshots/snapshots';
import type { AppDeps } from './gateway/context';
import { createMemoryIdempotencyStore, type IdempotencyStore } from './gateway/idempotency';
import { createMemoryRateLimiter, type RateLimiter } from './gateway/rateLimit';
import type { KnowledgeIndex } from './search/knowledgeIndex';

/** Which parts of the product this process runs (all of them for `npm start`). */
export interface Roles {
  gateway: boolean;
  relay: boolean;
  /** Projections this process applies: names, or 'all'. */
  projectors: string[] | 'all';
  indexer: boolean;
}
export const ALL_ROLES: Roles = { gateway: true, relay: true, projectors: 'all', indexer: true };
export const PROJECTION_NAMES = ['platform', 'catalog', 'audit', 'analytics'] as const;

export interface Product {
  app: ReturnType<typeof createApp>;
  deps: AppDeps;
  listen(port: number, host: string): Promise<Server>;
  stop(): Promise<void>;
}

/** Composition root: wires the adapters chosen by configuration into one running process. */
export async function startProduct(env: Env, opts: { logger?: pino.Logger; roles?: Roles } = {}): Promise<Product> {
  const roles = opts.roles ?? ALL_ROLES;
  const logger = opts.logger ?? pino({ level: env.logLevel, base: { service: 'tenant-rag' } });
  const log: AppDeps['log'] = (level, msg, extra) => logger[level](extra ?? {}, msg);
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => log('error', 'shutdown step failed', { error: (err as Error).message }));
  };

  try {
    // ---- PostgreSQL: read models, platform, content (and the event store unless EventStoreDB) ----
    let embedded: EmbeddedPostgres | null = null;
    let databaseUrl = env.databaseUrl;
    if (!databaseUrl) {
      embedded = await startEmbeddedPostgres({ dataDir: join(env.dataDir, 'postgres'), port: env.embeddedPgPort, log: (m) => log('info', m) });
      databaseUrl = embedded.url;
      stops.push(() => embedded!.stop());
      log('info', 'embedded PostgreSQL started', { port: embedded.port, dataDir: embedded.dataDir });
    }
    const pool = createPool(databaseUrl, { max: env.pgPoolMax });
    stops.push(() => pool.end());
    await migratePlatform(pool);
    const migrated = await migrateTenantSchemas(pool);
    if (migrated) log('info', 'tenant schemas migrated to per-embedder chunk sets', { schemas: migrated });

    let store: EventStore;
    if (env.eventstoreUrl) {
      const { createEsdbEventStore } = await import('../infra/eventstore/esdb');
      store = await createEsdbEventStore(env.eventstoreUrl);
    } else {
      store = await createPostgresEventStore(pool);
    }
    stops.push(() => store.close());
    const content = createPostgresContentStore(pool);

    // ---- models ----
    const embedderConfig: EmbedderConfig = {
      openai: env.openai?.embeddingModel ? { baseURL: env.openai.baseURL, apiKey: env.openai.apiKey, model: env.openai.embeddingModel } : undefined,
      modelDir: env.modelDir,
      workers: env.embedWorkers,
      threads: env.embedThreads,
      batchSize: env.embedBatch,
      choice: env.embedderChoice,
      log: (level, msg) => log(level, msg),
    };
    const { embedder, degraded } = await createEmbedder(embedderConfig);
    stops.push(() => embedder.close());
    // Earlier embedders that tenants still serve during a re-embedding, loaded on demand: an
    // OpenAI-compatible one needs a configured server (its model name comes from the embedder id).
    const registry = createEmbedderRegistry(embedder, {
      ...embedderConfig,
      openai: env.openai ? { baseURL: env.openai.baseURL, apiKey: env.openai.apiKey, model: env.openai.embeddingModel ?? '' } : undefined,
    });
    stops.push(() => registry.close());
    const serving = servingEmbedders(pool, registry);
    // Before any search: tenants without a serving row keep reading the sets they have.
    await ensureServingRows(pool, embedder.id);
    log('info', 'embedder ready', { embedder: embedder.id, semantic: embedder.semantic });
    const answerer = env.openai
      ? createOpenAIAnswerer({ baseURL: env.openai.baseURL, apiKey: env.openai.apiKey, model: env.openai.chatModel, timeoutMs: 60_000, maxRetries: 2 })
      : createExtractiveAnswerer();

    // ---- vectors, rate limits, idempotency ----
    let index: KnowledgeIndex;
    if (env.weaviateUrl) {
      const { createWeaviateIndex } = await import('../infra/vectors/weaviate');
      index = await createWeaviateIndex({ url: env.weaviateUrl, grpcPort: env.weaviateGrpcPort, pool, embedderId: () => embedder.id, dimensions: embedder.dimensions, collection: env.weaviateCollection, dimensionsOf: (id) => registry.dimensionsOf(id), idleTenantSeconds: env.weaviateIdleTenantSeconds, onError: (err, what) => log('warn', `${what} failed`, { error: err.message }) });
    } else {
      index = createEmbeddedIndex(pool, { embedderId: () => embedder.id, memoryMb: env.indexMemoryMb, hnswMinChunks: env.indexHnswMinChunks, onError: (err, tenantId) => log('error', 'HNSW graph build failed', { tenantId, error: err.message }) });
    }
    stops.push(() => index.close());
    let limiter: RateLimiter = createMemoryRateLimiter();
    let idempotency: IdempotencyStore = createMemoryIdempotencyStore();
    let redisPing: (() => Promise<unknown>) | null = null;
    if (env.redisUrl) {
      const { connectRedis } = await import('../infra/redis/client');
      const { createRedisRateLimiter } = await import('../infra/redis/rateLimiter');
      const { createRedisIdempotencyStore } = await import('../infra/redis/idempotencyStore');
      const redis = await connectRedis(env.redisUrl);
      stops.push(async () => void (await redis.quit()));
      limiter = createRedisRateLimiter(redis);
      idempotency = createRedisIdempotencyStore(redis);
      redisPing = () => redis.ping();
    }

    // ---- bus: in-process (projections read the store) or Kafka (relay + consumer groups) ----
    let bus: EventBus | null = null;
    if (env.kafkaBrokers) {
      bus = await createKafkaBus({ brokers: env.kafkaBrokers.split(',').map((b) => b.trim()).filter(Boolean), namespace: env.kafkaNamespace, log });
      stops.push(() => bus!.close());
    }
    let relay: Relay | null = null;
    if (bus && roles.relay) {
      relay = startRelay(store, pool, bus, { log });
      stops.push(() => relay!.stop());
    }

    // ---- projections and indexing workers ----
    let indexer: Indexer | null = null;
    const tenantListeners: ((tenantId: string) => void)[] = [];
    /**
     * After TenantDeleted: the read models are already dropped (platform projection); erase the
     * vectors, content, Redis keys, and every stream of the tenant down to a content-free tombstone.
     */
    const eraseTenant = async (tenantId: string) => {
      const steps: [string, () => Promise<unknown>][] = [
        ['vectors', () => index.dropTenant(tenantId)],
        ['content', () => content.deleteTenant(tenantId)],
        ['rate limits and idempotency keys', () => limiter.forgetPrefix(`${redisKey(tenantId)}:`)],
        [
          'serving embedders',
          () => pool.query('DELETE FROM platform.tenant_embedders WHERE tenant_id = $1 OR tenant_id IN (SELECT snapshot_id FROM platform.snapshots WHERE tenant_id = $1)', [tenantId]),
        ],
        ['snapshots', () => dropSnapshots({ pool, content, index }, tenantId)],
        ['streams', async () => Promise.all((await store.streamsOfTenant(tenantId)).map((s) => store.deleteStream(s)))],
      ];
      for (const [what, step] of steps) {
        await step().catch((err) => log('error', 'tenant erasure step failed', { tenantId, what, error: (err as Error).message }));
      }
      log('info', 'tenant erased', { tenantId });
    };
    const definitions: ProjectionDefinition[] = [
      {
        name: 'platform',
        defaultVersion: 1,
        rebuildable: false,
        make: () =>
          platformProjection({
            onTenantChanged: (t) => tenantListeners.forEach((l) => l(t)),
            onTenantProvisioned: (t) => void index.ensureTenant(t).catch((err) => log('error', 'vector tenant creation failed', { tenantId: t, error: (err as Error).message })),
            onTenantDeleted: (t) => void eraseTenant(t),
          }),
      },
      {
        name: 'catalog',
        defaultVersion: 1,
        rebuildable: true,
        make: (v) => catalogProjection({ onEnqueued: () => indexer?.wake(), onDeleted: (t, d) => void index.forgetDocument(t, d) }, v),
        // Readers use views on the active version's tables; a rebuild re-links chunk sets, then switches them.
        views: {
          prepare: (p, v) => clearCatalogVersion(p, v),
          switchTo: (p, v, o) => switchCatalog(p, v, { ...o, log }),
          retire: (p, v) => retireCatalogVersion(p, v, log),
        },
      },
      { name: 'audit', defaultVersion: AUDIT_VERSION, rebuildable: true, make: (v) => auditProjection(v) },
      { name: 'analytics', defaultVersion: ANALYTICS_VERSION, rebuildable: true, make: (v) => analyticsProjection(v) },
    ];
    if (roles.indexer) {
      indexer = startIndexer(
        { pool, store, content, index, embedder, registry, serving },
        { concurrency: env.indexConcurrency, embedBatch: Math.max(env.embedBatch, 16) * 4, maxTokens: 256, overlapTokens: 32, leaseMs: 30_000, maxAttempts: 3, log },
      );
      stops.push(() => indexer!.stop());
    }
    const manager = await startProjections({
      store,
      pool,
      bus,
      definitions,
      local: (name) => roles.projectors === 'all' || roles.projectors.includes(name),
      runner: { log },
    });
    stops.push(() => manager.stop());
    const projections = manager.handles();

    const activity = createActivityRecorder(store, { log, flushMs: env.activityFlushMs });
    stops.push(() => activity.stop());
    const deps: AppDeps = {
      config: env.config,
      store,
      pool,
      content,
      index,
      embedder,
      serving,
      embedderDegraded: degraded,
      answerer,
      limiter,
      idempotency,
      activity,
      projections,
      manager,
      indexer,
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
            return [`projection:${s.name}`, { ok: s.state !== 'failed', adapter: `v${s.version} ${s.source} ${s.state}`, detail: s.error ?? `position ${s.position || '0'}` }];
          }),
        );
        return {
          postgres: await check(embedded ? 'embedded-postgres' : 'postgres (DATABASE_URL)', () => pool.query('SELECT 1')),
          event_store: await check(store.kind, () => store.ping()),
          vector_index: await check(index.kind, () => index.ping()),
          bus: bus ? await check('kafka', () => bus!.ping()) : { ok: true, adapter: 'in-process (store subscription)' },
          ...(relay ? { relay: { ok: relay.status().error === null, adapter: relay.status().active ? 'kafka relay (active)' : 'kafka relay (standby)', detail: `position ${relay.status().position || '0'}` } } : {}),
          rate_limiter: redisPing ? await check('redis', redisPing) : { ok: true, adapter: limiter.kind },
          idempotency: { ok: true, adapter: idempotency.kind },
          embedder: { ok: true, adapter: embedder.id, ...(degraded ? { detail: degraded } : {}) },
          answerer: { ok: true, adapter: answerer.id },
          ...proj,
        };
      },
    };
    const app = createApp(deps);
    appendObservers.length = 0;
    appendObservers.push((types) => types.forEach((type) => eventsAppended.inc({ type })));
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
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
