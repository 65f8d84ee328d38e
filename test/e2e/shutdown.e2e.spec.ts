/**
 * Shutdown of the real process, as `npm start` runs it (`node --import tsx services/main.ts all`,
 * embedded PostgreSQL, hashing embedder): SIGTERM drains and exits 0 without losing an
 * acknowledged upload; a `kill -9` does not leave the embedded PostgreSQL running; a taken port
 * is reported with the process that holds it.
 *
 * Durations are asserted only as generous bounds that prove "bounded" (SHUTDOWN_TIMEOUT_MS + 5 s).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer, type Server } from 'node:net';
import { freePort } from '../support/freePort';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from '../../infra/postgres/embedded';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fakeOpenAI';

const ROOT = join(__dirname, '..', '..');
const ADMIN = 'shutdown-admin-token-0123456789abcdef0123456789';
const JWT = 'shutdown-jwt-secret-0123456789abcdef0123456789';
const SHUTDOWN_TIMEOUT_MS = 8000;
const PASSWORD = 'correct horse battery staple';

interface Running {
  child: ChildProcess;
  port: number;
  pgPort: number;
  dataDir: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const dirs: string[] = [];
/** A data directory with a cluster already (initdb costs seconds): the first test's, once it is done. */
let initialised: string | null = null;
const children: ChildProcess[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tr-shutdown-'));
  dirs.push(d);
  return d;
}


/** Starts the product; resolves once it listens, or once it exited (start failed). */
async function startProcess(opts: { dataDir: string; port: number; pgPort: number; env?: Record<string, string> }): Promise<Running & { started: boolean }> {
  // A clean environment: a sourced .env.infra (DATABASE_URL, KAFKA_BROKERS, ...) must not leak in.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    DATA_DIR: opts.dataDir,
    PORT: String(opts.port),
    EMBEDDED_PG_PORT: String(opts.pgPort),
    EMBEDDER: 'hashing',
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET: JWT,
    LOG_LEVEL: 'warn',
    SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    ...opts.env,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/main.ts', 'all'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + 90_000;
  while (!out.includes('listening on') && !done) {
    if (Date.now() > deadline) throw new Error(`product did not start:\n${out}`);
    await sleep(50);
  }
  return { child, port: opts.port, pgPort: opts.pgPort, dataDir: opts.dataDir, output: () => out, exited, started: !done };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function request(port: number, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, agent?: http.Agent): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      { host: '127.0.0.1', port, method, path, agent: agent ?? false, headers: { ...(data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function tenantToken(port: number, slug: string, create: boolean): Promise<Record<string, string>> {
  if (create) {
    const r = await request(port, 'POST', '/v1/tenants', { name: slug, slug, owner: { email: `owner@${slug}.test`, password: PASSWORD } }, { authorization: `Bearer ${ADMIN}` });
    if (r.status !== 201) throw new Error(`provision: ${r.status} ${r.body}`);
  }
  const login = await request(port, 'POST', '/v1/auth/login', { tenant: slug, email: `owner@${slug}.test`, password: PASSWORD });
  if (login.status !== 200) throw new Error(`login: ${login.status} ${login.body}`);
  return { authorization: `Bearer ${JSON.parse(login.body).access_token as string}` };
}

function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
    return pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function stopGracefully(r: Running): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  r.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'not exited'>((resolve) => (timer = setTimeout(() => resolve('not exited'), SHUTDOWN_TIMEOUT_MS + 5000)));
  const result = await Promise.race([r.exited, bound]);
  clearTimeout(timer);
  if (result === 'not exited') {
    r.child.kill('SIGKILL');
    throw new Error(`no exit within SHUTDOWN_TIMEOUT_MS + 5 s:\n${r.output()}`);
  }
  return result;
}

async function listDocumentIds(port: number, auth: Record<string, string>): Promise<Set<string>> {
  const ids = new Set<string>();
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const r = await request(port, 'GET', `/v1/documents?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, undefined, auth);
    if (r.status !== 200) throw new Error(`list: ${r.status} ${r.body}`);
    const body = JSON.parse(r.body) as { data?: { id: string }[]; items?: { id: string }[]; next_cursor?: string | null };
    for (const d of body.data ?? body.items ?? []) ids.add(d.id);
    cursor = body.next_cursor ?? null;
    if (!cursor) break;
  }
  return ids;
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) {
    const pid = postmasterPid(d);
    if (pid && isAlive(pid)) process.kill(pid, 'SIGINT');
  }
  // The data directories go once their servers are down (the watchdogs stop them within seconds).
  setTimeout(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })), 3000).unref();
});

describe('shutdown of the real process', () => {
  let fake: FakeOpenAI;
  beforeAll(async () => {
    fake = await startFakeOpenAI();
  });
  afterAll(async () => {
    await fake.close();
  });

  it('SIGTERM with keep-alive connections, an open answer stream and uploads in flight: exit 0, every acknowledged upload there after a restart', async () => {
    const dataDir = tempDir();
    const [port, pgPort] = [await freePort(), await freePort()];
    // Answers come from the fake model server, which stalls mid-stream: the stream is open at SIGTERM.
    const modelEnv = { OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: 'fake', OPENAI_CHAT_MODEL: 'fake-chat' };
    const p = await startProcess({ dataDir, port, pgPort, env: modelEnv });
    expect(p.started).toBe(true);
    const slug = `shut-${Date.now().toString(36)}`;
    const auth = await tenantToken(port, slug, true);
    const first = await request(port, 'POST', '/v1/documents', { filename: 'seed.txt', text: 'The harbour opens at dawn. Ships leave at noon.' }, auth);
    expect(first.status).toBe(202);
    const seedId = (JSON.parse(first.body) as { id: string }).id;
    // Indexed, so that the question below has passages and reaches the model.
    await waitUntil('the seed document to be indexed', async () => JSON.parse((await request(port, 'GET', `/v1/documents/${seedId}`, undefined, auth)).body).status === 'ready', 30_000);

    // Idle keep-alive connections.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    await Promise.all(Array.from({ length: 6 }, () => request(port, 'GET', '/health', undefined, {}, agent)));

    // An answer stream that stays open (the model stalls after its first chunk).
    fake.setMode({ stall: 30_000 });
    const stream = new Promise<{ status: number; events: string; ended: 'end' | 'error' }>((resolve) => {
      const body = JSON.stringify({ question: 'When does the harbour open?', stream: true });
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/ask', agent: false, headers: { ...auth, accept: 'text/event-stream', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
        let events = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (events += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, events, ended: 'end' }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, events, ended: 'error' }));
      });
      req.on('error', () => resolve({ status: 0, events: '', ended: 'error' }));
      req.end(body);
    });
    await Promise.race([
      waitUntil('the answer stream to reach the model', () => fake.requests.some((r) => r.path === '/v1/chat/completions'), 15_000),
      stream.then((s) => Promise.reject(new Error(`the answer stream ended early: ${s.status} ${s.events}`))),
    ]);

    // A client that keeps uploading (on keep-alive connections) until the server refuses.
    const acknowledged = new Set<string>();
    let uploading = true;
    let n = 0;
    const uploader = async () => {
      while (uploading) {
        const i = n++;
        try {
          const r = await request(port, 'POST', '/v1/documents', { filename: `doc-${i}.txt`, text: `Document ${i}. ${'Lorem ipsum dolor sit amet. '.repeat(2000)}` }, auth, agent);
          if (r.status === 202 || r.status === 200) acknowledged.add((JSON.parse(r.body) as { id: string }).id);
          else if (r.status >= 500) throw new Error(`upload ${i}: ${r.status} ${r.body}`);
        } catch (err) {
          if ((err as Error).message.startsWith('upload')) throw err;
          await sleep(20); // refused or reset: the server is going away
        }
      }
    };
    const uploaders = [uploader(), uploader(), uploader()];
    await waitUntil('some uploads to be acknowledged', () => acknowledged.size >= 3, 30_000);

    const exit = await stopGracefully(p);
    uploading = false;
    await Promise.all(uploaders);
    agent.destroy();
    expect({ exit, output: exit.code === 0 ? '' : p.output() }).toEqual({ exit: { code: 0, signal: null }, output: '' });
    expect(p.output()).toContain('"msg":"stopped"');

    // The stream was ended by the server with a final event, not cut.
    const s = await stream;
    expect(s.status).toBe(200);
    expect(s.ended).toBe('end');
    expect(s.events).toContain('event: sources');
    expect(s.events).toMatch(/event: error\ndata: \{[^\n]*"status":503/);

    // The embedded PostgreSQL is down, and every acknowledged upload is there after a restart.
    expect(postmasterPid(dataDir)).toBeNull();
    const again = await startProcess({ dataDir, port, pgPort, env: modelEnv });
    expect(again.started).toBe(true);
    try {
      const ids = await listDocumentIds(port, await tenantToken(port, slug, false));
      const missing = [...acknowledged].filter((id) => !ids.has(id));
      expect({ acknowledged: acknowledged.size, missing }).toEqual({ acknowledged: acknowledged.size, missing: [] });
    } finally {
      expect((await stopGracefully(again)).code).toBe(0);
    }
    initialised = dataDir;
  });

  it('kill -9 of the node process: its embedded PostgreSQL stops soon after, and a new start on the same port works', async () => {
    const [port, pgPort] = [await freePort(), await freePort()];
    const first = await startProcess({ dataDir: initialised ?? tempDir(), port, pgPort });
    expect(first.started).toBe(true);
    const pg = postmasterPid(first.dataDir);
    expect(pg).not.toBeNull();
    expect(isAlive(pg!)).toBe(true);

    first.child.kill('SIGKILL');
    await first.exited;
    await waitUntil(`postmaster ${pg} to stop after its node process was killed`, () => !isAlive(pg!), 15_000);

    // Another data directory, the same ports: what failed before the watchdog.
    const second = await startProcess({ dataDir: tempDir(), port, pgPort });
    expect({ started: second.started, output: second.started ? '' : second.output() }).toEqual({ started: true, output: '' });
    expect((await request(port, 'GET', '/health')).status).toBe(200);
    expect((await stopGracefully(second)).code).toBe(0);
  });

  describe('a start that finds its port taken names the process holding it', () => {
    let holder: Server;
    let taken: number;
    beforeEach(async () => {
      taken = await freePort();
      holder = createServer(() => undefined);
      await new Promise<void>((resolve) => holder.listen(taken, '127.0.0.1', resolve));
    });
    afterEach(async () => {
      await new Promise((r) => holder.close(r));
    });

    it('EMBEDDED_PG_PORT taken: fails before starting PostgreSQL, naming the holder pid', async () => {
      const r = await startProcess({ dataDir: tempDir(), port: await freePort(), pgPort: taken });
      expect(r.started).toBe(false);
      const exit = await r.exited;
      expect(exit.code).toBe(1);
      expect(r.output()).toContain(`port ${taken} on 127.0.0.1 is already in use by process ${process.pid}`);
      expect(r.output()).toContain('EMBEDDED_PG_PORT');
      expect(postmasterPid(r.dataDir)).toBeNull();
    });

    it('PORT taken: fails naming the holder pid, and stops the PostgreSQL it had started', async () => {
      const r = await startProcess({ dataDir: initialised ?? tempDir(), port: taken, pgPort: await freePort() });
      expect(r.started).toBe(false);
      const exit = await r.exited;
      expect(exit.code).toBe(1);
      expect(r.output()).toContain(`port ${taken} on 127.0.0.1 is already in use by process ${process.pid}`);
      expect(r.output()).toContain('(PORT)');
      expect(postmasterPid(r.dataDir)).toBeNull();
    });
  });
});
