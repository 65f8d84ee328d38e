import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from './gateway/context';
import { DEFAULT_HEAP_GROWTH_PERCENT } from './core/heap';

/** Every environment variable the product reads (documented in README.md, "Configuration"). */
export interface Env {
  production: boolean;
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | null;
  embeddedPgPort: number;
  pgPoolMax: number;
  /** SHUTDOWN_TIMEOUT_MS: SIGTERM/SIGINT drains and stops within this; past it what remains is closed and the exit code is 1. */
  shutdownTimeoutMs: number;
  eventstoreUrl: string | null;
  kafkaBrokers: string | null;
  kafkaNamespace: string;
  weaviateCollection: string;
  weaviateUrl: string | null;
  weaviateGrpcPort: number;
  /** WEAVIATE_IDLE_TENANT_SECONDS: tenants unused this long are set INACTIVE in Weaviate (0: never). */
  weaviateIdleTenantSeconds: number;
  redisUrl: string | null;
  openai: { baseURL: string; apiKey: string; chatModel: string; embeddingModel: string | null } | null;
  modelDir: string;
  /** EMBEDDER: `auto`, `hashing` or `hashing:<dimensions>`. */
  embedderChoice: string;
  embedWorkers: number;
  embedThreads: number;
  embedBatch: number;
  /** How long SearchPerformed/QuestionAsked records are buffered before one append (ms). */
  activityFlushMs: number;
  indexConcurrency: number;
  /** INDEX_MEMORY_MB: budget of the embedded index's loaded tenants (MiB); least recently searched evicted beyond it. */
  indexMemoryMb: number;
  /** HEAP_GROWTH_PERCENT: V8's old-generation growth between major GCs (services/core/heap.ts); 0: V8's own. */
  heapGrowthPercent: number;
  /** INDEX_HNSW_MIN_CHUNKS: vectors a tenant needs for an HNSW graph in the embedded index (0: never). */
  indexHnswMinChunks: number;
  logLevel: string;
  adminTokenGenerated: boolean;
  config: Config;
}

const int = (v: string | undefined, def: number, name: string): number => {
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(v)}`);
  return n;
};

const positive = (n: number, name: string): number => {
  if (!(n > 0)) throw new Error(`${name} must be greater than 0, got ${n}`);
  return n;
};

export class ConfigError extends Error {}

/** HEAP_GROWTH_PERCENT as given (unset: the default); also read by the bench's index process. */
export const heapGrowth = (v: string | undefined): number => {
  if (v === undefined || v === '') return DEFAULT_HEAP_GROWTH_PERCENT;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 1000) throw new ConfigError(`HEAP_GROWTH_PERCENT must be a whole number from 0 to 1000, got ${JSON.stringify(v)}`);
  return n;
};

/** 1 s to 10 min: shorter cannot even stop PostgreSQL cleanly, longer outlasts any supervisor's patience. */
function shutdownTimeout(v: string | undefined): number {
  const n = v === undefined || v === '' ? 10_000 : Number(v);
  if (!Number.isInteger(n) || n < 1000 || n > 600_000) throw new ConfigError(`SHUTDOWN_TIMEOUT_MS must be an integer from 1000 to 600000 (ms), got ${JSON.stringify(v)}`);
  return n;
}

/**
 * Production mode (NODE_ENV=production) refuses to start without real secrets: JWT_SECRET and
 * ADMIN_TOKEN must be set and at least 32 characters. In development, a missing JWT secret is
 * generated once and kept in DATA_DIR (so sessions survive restarts) and a missing ADMIN_TOKEN
 * is generated per start and printed once.
 */
export function loadEnv(e: NodeJS.ProcessEnv = process.env): Env {
  const production = e.NODE_ENV === 'production';
  const dataDir = resolve(e.DATA_DIR || './data');
  let jwtSecret = e.JWT_SECRET ?? '';
  let adminToken = e.ADMIN_TOKEN ?? '';
  const weak = (s: string) => s.length < 32 || /^(changeme|secret|password|default)/i.test(s);
  if (production) {
    if (!jwtSecret || weak(jwtSecret)) throw new ConfigError('NODE_ENV=production: JWT_SECRET must be set to a random value of at least 32 characters');
    if (!adminToken || weak(adminToken)) throw new ConfigError('NODE_ENV=production: ADMIN_TOKEN must be set to a random value of at least 32 characters');
  }
  let adminTokenGenerated = false;
  if (!jwtSecret) {
    mkdirSync(dataDir, { recursive: true });
    const file = join(dataDir, 'jwt-secret');
    if (!existsSync(file)) writeFileSync(file, randomBytes(48).toString('base64url'), { mode: 0o600 });
    jwtSecret = readFileSync(file, 'utf8').trim();
  }
  if (!adminToken) {
    adminToken = `adm_${randomBytes(24).toString('base64url')}`;
    adminTokenGenerated = true;
  }
  const openai =
    e.OPENAI_BASE_URL || e.OPENAI_API_KEY
      ? {
          baseURL: e.OPENAI_BASE_URL || 'https://api.openai.com/v1',
          apiKey: e.OPENAI_API_KEY || 'not-needed',
          chatModel: e.OPENAI_CHAT_MODEL || 'gpt-4o-mini',
          embeddingModel: e.OPENAI_EMBEDDING_MODEL || null,
        }
      : null;
  return {
    production,
    port: int(e.PORT, 3000, 'PORT'),
    host: e.HOST || '127.0.0.1',
    dataDir,
    databaseUrl: e.DATABASE_URL || null,
    embeddedPgPort: int(e.EMBEDDED_PG_PORT, 25329, 'EMBEDDED_PG_PORT'),
    pgPoolMax: Math.max(2, int(e.PG_POOL_MAX, 16, 'PG_POOL_MAX')),
    shutdownTimeoutMs: shutdownTimeout(e.SHUTDOWN_TIMEOUT_MS),
    eventstoreUrl: e.EVENTSTORE_URL || null,
    kafkaBrokers: e.KAFKA_BROKERS || null,
    kafkaNamespace: e.KAFKA_NAMESPACE || '',
    weaviateCollection: e.WEAVIATE_COLLECTION || 'TenantChunk',
    weaviateUrl: e.WEAVIATE_URL || null,
    weaviateGrpcPort: int(e.WEAVIATE_GRPC_PORT, 50051, 'WEAVIATE_GRPC_PORT'),
    weaviateIdleTenantSeconds: Math.max(0, Math.floor(int(e.WEAVIATE_IDLE_TENANT_SECONDS, 900, 'WEAVIATE_IDLE_TENANT_SECONDS'))),
    redisUrl: e.REDIS_URL || null,
    openai,
    modelDir: resolve(e.MODEL_DIR || join(__dirname, '..', 'models', 'all-minilm-l6-v2-q')),
    embedderChoice: e.EMBEDDER || 'auto',
    embedWorkers: int(e.EMBED_WORKERS, 1, 'EMBED_WORKERS'),
    embedThreads: int(e.EMBED_THREADS, 1, 'EMBED_THREADS'),
    embedBatch: int(e.EMBED_BATCH, 16, 'EMBED_BATCH'),
    activityFlushMs: Math.min(5000, Math.max(1, int(e.ACTIVITY_FLUSH_MS, 250, 'ACTIVITY_FLUSH_MS'))),
    indexConcurrency: int(e.INDEX_CONCURRENCY, 2, 'INDEX_CONCURRENCY'),
    indexMemoryMb: positive(int(e.INDEX_MEMORY_MB, 512, 'INDEX_MEMORY_MB'), 'INDEX_MEMORY_MB'),
    heapGrowthPercent: heapGrowth(e.HEAP_GROWTH_PERCENT),
    indexHnswMinChunks: Math.floor(int(e.INDEX_HNSW_MIN_CHUNKS, 5_000, 'INDEX_HNSW_MIN_CHUNKS')),
    logLevel: e.LOG_LEVEL || 'info',
    adminTokenGenerated,
    config: {
      production,
      jwtSecret,
      jwtTtlSeconds: int(e.JWT_TTL_SECONDS, 3600, 'JWT_TTL_SECONDS'),
      adminToken,
      maxUploadBytes: int(e.MAX_UPLOAD_BYTES, 10 * 1024 * 1024, 'MAX_UPLOAD_BYTES'),
      defaultQuotas: { maxDocuments: int(e.DEFAULT_MAX_DOCUMENTS, 10_000, 'DEFAULT_MAX_DOCUMENTS'), maxBytes: int(e.DEFAULT_MAX_BYTES, 1024 * 1024 * 1024, 'DEFAULT_MAX_BYTES') },
      defaultRateLimit: { perSecond: int(e.RATE_LIMIT_PER_SECOND, 100, 'RATE_LIMIT_PER_SECOND'), burst: int(e.RATE_LIMIT_BURST, 200, 'RATE_LIMIT_BURST') },
      tokenRateLimit: { perSecond: int(e.TOKEN_RATE_LIMIT_PER_SECOND, 50, 'TOKEN_RATE_LIMIT_PER_SECOND'), burst: int(e.TOKEN_RATE_LIMIT_BURST, 100, 'TOKEN_RATE_LIMIT_BURST') },
      consistencyWaitMs: int(e.CONSISTENCY_WAIT_MS, 2000, 'CONSISTENCY_WAIT_MS'),
    },
  };
}
