/**
 * Private real servers for the fault suite: PostgreSQL 15, Redis, Kafka and Weaviate started by
 * infra/scripts/up.sh with an INFRA_DIR, env file and port offset of their own, so that restarting
 * them never touches the shared servers other suites use (.env.infra). Only the machine-wide
 * binaries are shared (Debian packages, the Kafka jars and the Weaviate binary in
 * TENANT_RAG_CACHE); when one is missing the suite is skipped by name rather than installing it.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, chmodSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './harness';

export type Service = 'postgres' | 'redis' | 'kafka' | 'weaviate';

const CACHE = process.env.TENANT_RAG_CACHE || '/var/cache/tenant-rag';
const BINARIES: [string, string][] = [
  ['PostgreSQL 15 (Debian postgresql-15)', '/usr/lib/postgresql/15/bin/postgres'],
  ['Kafka 4.1.2 jars', join(CACHE, 'kafka', '4.1.2', '.ok')],
  ['Weaviate v1.39.3 binary', join(CACHE, 'weaviate', 'v1.39.3', 'weaviate-server')],
];

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, cmd)));
}

/** Null when every server can be started here, else why not. */
export function privateServersUnavailable(): string | null {
  if (process.platform !== 'linux') return 'the private servers are started with infra/scripts (Linux only)';
  const missing = BINARIES.filter(([, path]) => !existsSync(path)).map(([what]) => what);
  if (!onPath('redis-server')) missing.push('redis-server');
  if (!onPath('java')) missing.push('java');
  if (missing.length) return `${missing.join(', ')} not installed (npm run infra:up installs them); the fault suite does not install servers`;
  return null;
}

function sh(script: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [join(REPO, 'infra', 'scripts', script), ...args], { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${script} ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-3000)}`));
      else resolve(`${stdout}${stderr}`);
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

/** The ports lib.sh derives from an offset (all below the ephemeral range for offsets < 3600). */
const BASE_PORTS = [25432, 26379, 29092, 29093, 28080, 28051, 28946, 28947, 28300, 28301];

async function pickOffset(): Promise<number> {
  for (let attempt = 0; attempt < 40; attempt++) {
    const offset = 1500 + 10 * Math.floor(Math.random() * 200);
    const ports = BASE_PORTS.map((p) => p + offset);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return offset;
  }
  throw new Error('no free port offset for the private servers');
}

export interface PrivateServers {
  env: { DATABASE_URL: string; REDIS_URL: string; KAFKA_BROKERS: string; WEAVIATE_URL: string; WEAVIATE_GRPC_PORT: string };
  offset: number;
  stop(service: Service): Promise<void>;
  start(service: Service): Promise<void>;
  /** Stops everything and deletes the private data. */
  destroy(): Promise<void>;
}

function parseEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^export ([A-Z_]+)='?([^']*)'?$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export async function startPrivateServers(): Promise<PrivateServers> {
  const dir = mkdtempSync(join(tmpdir(), 'tr-faults-infra-'));
  // PostgreSQL runs as user postgres, which must traverse this directory.
  chmodSync(dir, 0o755);
  const offset = await pickOffset();
  const env = { INFRA_DIR: join(dir, 'infra'), TENANT_RAG_ENV_FILE: join(dir, 'env'), TENANT_RAG_PORT_OFFSET: String(offset) };
  const up = (services: Service[]) => sh('up.sh', ['--strict', ...services], env, 180_000);
  const down = (services: Service[], purge = false) => sh('down.sh', [...(purge ? ['--purge'] : []), ...services], env, 120_000);
  try {
    await up(['postgres', 'redis', 'kafka', 'weaviate']);
  } catch (err) {
    await down([], true).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const vars = parseEnvFile(env.TENANT_RAG_ENV_FILE);
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'KAFKA_BROKERS', 'WEAVIATE_URL', 'WEAVIATE_GRPC_PORT']) {
    if (!vars[k]) throw new Error(`private servers: ${k} missing from ${env.TENANT_RAG_ENV_FILE}`);
  }
  return {
    env: vars as PrivateServers['env'],
    offset,
    stop: async (s) => void (await down([s])),
    start: async (s) => void (await up([s])),
    async destroy() {
      await down([], true).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
