import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';

/**
 * Real servers for the production-profile suites, resolved in this order: addresses given in
 * the environment (what .ci/run exports after infra/scripts/up.sh), containers started by
 * testcontainers where a Docker engine answers, otherwise the suite is reported skipped by name.
 */
export function dockerAnswers(): boolean {
  const probe = `
    const http = require('node:http');
    const h = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
    const u = new URL(h.replace(/^tcp:/, 'http:'));
    const target = u.protocol === 'unix:' ? { socketPath: u.pathname } : { host: u.hostname, port: Number(u.port) || 2375 };
    const req = http.get({ ...target, path: '/_ping', timeout: 1800 }, (res) => process.exit(res.statusCode === 200 ? 0 : 1));
    req.on('timeout', () => process.exit(1));
    req.on('error', () => process.exit(1));`;
  return spawnSync(process.execPath, ['-e', probe], { timeout: 2000, stdio: 'ignore' }).status === 0;
}

export interface ProductionServers {
  env: Record<string, string>;
  stop(): Promise<void>;
}

const REQUIRED = ['KAFKA_BROKERS', 'WEAVIATE_URL', 'WEAVIATE_GRPC_PORT', 'REDIS_URL'] as const;

/** Null with the reason when the production profile cannot run here. */
export function productionAvailability(): { source: 'env' | 'docker' } | { skip: string } {
  if (REQUIRED.every((k) => process.env[k])) return { source: 'env' };
  if (dockerAnswers()) return { source: 'docker' };
  const missing = REQUIRED.filter((k) => !process.env[k]).join(', ');
  return { skip: `${missing} not set (run npm run infra:up and source .env.infra) and no Docker engine answers` };
}

/** Env for one product on the production profile, isolated from other runs on the same servers. */
export async function productionServers(source: 'env' | 'docker'): Promise<ProductionServers> {
  const ns = `t${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const isolation = { KAFKA_NAMESPACE: ns, WEAVIATE_COLLECTION: `Chunk${ns}` };
  if (source === 'env') {
    const env: Record<string, string> = { ...isolation };
    for (const k of REQUIRED) env[k] = process.env[k]!;
    return { env, stop: async () => undefined };
  }
  const { GenericContainer } = await import('testcontainers');
  const redis = await new GenericContainer('redis:7').withExposedPorts(6379).start();
  const weaviate = await startWeaviateContainer();
  const { KafkaContainer } = await import('@testcontainers/kafka').catch(() => ({ KafkaContainer: null }));
  if (!KafkaContainer) throw new Error('Docker answers but @testcontainers/kafka is not installed; set KAFKA_BROKERS instead');
  const kafka = await new KafkaContainer('confluentinc/cp-kafka:7.6.1').withKraft().start();
  return {
    env: {
      ...isolation,
      REDIS_URL: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
      WEAVIATE_URL: weaviate.url,
      WEAVIATE_GRPC_PORT: String(weaviate.grpcPort),
      KAFKA_BROKERS: `${kafka.getHost()}:${kafka.getMappedPort(9093)}`,
    },
    async stop() {
      await Promise.allSettled([redis.stop(), weaviate.stop(), kafka.stop()]);
    },
  };
}

/** The Weaviate version infra/scripts/up.sh installs, as a container image. */
export const WEAVIATE_IMAGE = 'cr.weaviate.io/semitechnologies/weaviate:1.39.3';

/** A throw-away Weaviate (anonymous access, no vectorizer modules) where a Docker engine answers. */
export async function startWeaviateContainer(): Promise<{ url: string; grpcPort: number; stop: () => Promise<unknown> }> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const c = await new GenericContainer(WEAVIATE_IMAGE)
    .withEnvironment({
      AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'true',
      PERSISTENCE_DATA_PATH: '/var/lib/weaviate',
      DEFAULT_VECTORIZER_MODULE: 'none',
      ENABLE_MODULES: '',
      CLUSTER_HOSTNAME: 'node1',
      DISABLE_TELEMETRY: 'true',
      GO_PROFILING_DISABLE: 'true',
    })
    .withExposedPorts(8080, 50051)
    .withWaitStrategy(Wait.forHttp('/v1/.well-known/ready', 8080).forStatusCode(200))
    .withStartupTimeout(120_000)
    .start();
  return { url: `http://${c.getHost()}:${c.getMappedPort(8080)}`, grpcPort: c.getMappedPort(50051), stop: () => c.stop() };
}
