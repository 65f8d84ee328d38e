/**
 * Fault-suite harness: the product as real child processes (so `kill -9` is real), a load client
 * for several tenants that records every acknowledged command and every status code, and the
 * checks run after a fault: every acknowledged command's event is in the store exactly once,
 * every projection reaches the store's last position, no document is left `pending`, and no
 * tenant sees another tenant's documents.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Pool } from 'pg';
import { decodePosition, encodePosition } from '../../infra/eventstore/postgres';

export const REPO = resolve(__dirname, '..', '..');
export const OUT_DIR = join(REPO, 'test-output', 'faults');
export const ADMIN = `adm_faults_${'0123456789abcdef'.repeat(2)}`;
const JWT_SECRET = `faults-jwt-secret-${'0123456789abcdef'.repeat(2)}`;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export { freePort } from '../support/freePort';

/** Polls until `fn` resolves truthy; throws with `what` and the last error after `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

// ---- product processes ---------------------------------------------------------------------------

export interface ProductProcess {
  readonly name: string;
  readonly pid: number | undefined;
  /** Starts (again) with the same environment; resolves once it serves (gateway) or runs. */
  start(): Promise<void>;
  kill9(): Promise<void>;
  /** SIGTERM, then SIGKILL after 20 s. */
  stop(): Promise<void>;
  alive(): boolean;
}

/**
 * One product process: `node --import tsx services/main.ts <role...>` (node itself, not the tsx
 * CLI, which would run the product as a grandchild that a SIGKILL of the CLI does not reach).
 */
export function productProcess(name: string, args: string[], env: Record<string, string>, opts: { port?: number; logDir: string }): ProductProcess {
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let starts = 0;
  const self: ProductProcess = {
    name,
    get pid() {
      return child?.pid;
    },
    alive: () => child !== null && child.exitCode === null && child.signalCode === null,
    async start() {
      if (self.alive()) throw new Error(`${name} is already running`);
      mkdirSync(opts.logDir, { recursive: true });
      const logPath = join(opts.logDir, `${name}.${++starts}.log`);
      const fd = openSync(logPath, 'w');
      const c = spawn(process.execPath, ['--import', 'tsx', 'services/main.ts', ...args], {
        cwd: REPO,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      child = c;
      exited = new Promise((r) => c.once('exit', () => r()));
      const ready = async () => {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`${name} exited (${c.exitCode ?? c.signalCode}); log ${logPath}:\n${readFileSync(logPath, 'utf8').slice(-2000)}`);
        if (opts.port) {
          const r = await fetch(`http://127.0.0.1:${opts.port}/health`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
          return r?.ok ?? false;
        }
        return /running/.test(readFileSync(logPath, 'utf8'));
      };
      const deadline = Date.now() + 90_000;
      for (;;) {
        // Ready only if our child is still the one answering (not another process on the port).
        if ((await ready()) && c.exitCode === null && c.signalCode === null) return;
        if (Date.now() > deadline) throw new Error(`${name} not ready within 90 s; log ${logPath}:\n${readFileSync(logPath, 'utf8').slice(-2000)}`);
        await sleep(150);
      }
    },
    async kill9() {
      if (!child || !self.alive()) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!child || !self.alive()) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child?.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
  return self;
}

/** Environment shared by the product processes of one deployment (hashing embedder: fast, no model). */
export function productEnv(dataDir: string, databaseUrl: string, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET,
    EMBEDDER: 'hashing',
    LOG_LEVEL: 'warn',
    PG_POOL_MAX: '8',
    CONSISTENCY_WAIT_MS: '2000',
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
    ...extra,
  };
}

// ---- HTTP client -----------------------------------------------------------------------------------

export interface Tenant {
  index: number;
  id: string;
  slug: string;
  auth: Record<string, string>;
  /** A word only this tenant's documents contain. */
  marker: string;
}

async function call(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown, timeoutMs = 15_000): Promise<{ status: number; json: any; code: string }> {
  try {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await r.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: r.status, json, code: String(r.status) };
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string } };
    const code = e.name === 'TimeoutError' ? 'timeout' : (e.cause?.code ?? 'network');
    return { status: 0, json: null, code };
  }
}

export async function provisionTenants(base: string, count: number, tag: string): Promise<Tenant[]> {
  const out: Tenant[] = [];
  for (let i = 0; i < count; i++) {
    const slug = `${tag}-${i}-${randomBytes(3).toString('hex')}`;
    const email = `owner@${slug}.test`;
    const password = 'correct horse battery staple';
    // Set-up calls get a minute: a product that has just started on a loaded machine answers slowly.
    const p = await call(base, 'POST', '/v1/tenants', { Authorization: `Bearer ${ADMIN}` }, { name: slug, slug, owner: { email, password } }, 60_000);
    // 202: accepted, the platform read model not there yet within CONSISTENCY_WAIT_MS (e.g. Kafka
    // consumers of a just-started process still joining their group): sign-in works once it is.
    if (p.status !== 201 && p.status !== 202) throw new Error(`provisioning ${slug}: ${p.status} ${JSON.stringify(p.json)}`);
    const login = await until(`login ${slug}`, async () => {
      const l = await call(base, 'POST', '/v1/auth/login', {}, { tenant: slug, email, password }, 60_000);
      return l.status === 200 ? l : null;
    }, 120_000);
    out.push({ index: i, id: p.json.id, slug, auth: { Authorization: `Bearer ${login.json.access_token}` }, marker: `zqmark${tag.replace(/[^a-z]/g, '')}${String.fromCharCode(97 + i)}x` });
  }
  return out;
}

// ---- load ------------------------------------------------------------------------------------------

export interface Ack {
  tenant: number;
  kind: 'upload' | 'delete';
  documentId: string;
  /** Global position answered by an upload (202). */
  position?: string;
  at: number;
  /** The upload made to crash the embedder (it must end `failed`). */
  poison?: boolean;
}

export interface Load {
  acks: Ack[];
  statuses: Record<string, number>;
  /** Documents whose delete was not acknowledged (its outcome is unknown to the client). */
  uncertain: Set<string>;
  /** Acknowledged commands sent at or after this time. */
  ackedSince(t: number): number;
  /** First acknowledged command at or after t (ms since epoch), or null. */
  firstAckAfter(t: number): number | null;
  stop(): Promise<void>;
}

export function docText(t: Tenant, n: number, extraParagraphs = 0): string {
  const body = Array.from({ length: extraParagraphs }, (_, k) => `Paragraph ${k} about ${t.marker} and item ${n}: the quick brown fox jumps over the lazy dog ${k}.`).join('\n\n');
  return `# Note ${n} of ${t.slug}\n\nThis note mentions ${t.marker} and the number ${n}. Employees get ${20 + (n % 10)} days of vacation.\n\n${body}`;
}

/**
 * Each tenant in its own loop: upload a new document, every third round delete one of its older
 * documents, search, ask. Every status is counted (0-level failures by error code); every 202
 * upload and 204 delete is recorded as acknowledged.
 */
export function startLoad(base: string, tenants: Tenant[], opts: { tag: string; pauseMs?: number; bigEvery?: number; poison?: { tenant: number; text: string } } = { tag: 'l' }): Load {
  const acks: Ack[] = [];
  const statuses: Record<string, number> = {};
  const uncertain = new Set<string>();
  let stopped = false;
  const count = (op: string, code: string) => {
    const k = `${op} ${code}`;
    statuses[k] = (statuses[k] ?? 0) + 1;
  };
  const loops = tenants.map(async (t) => {
    const live: string[] = [];
    let n = 0;
    while (!stopped) {
      n++;
      const big = opts.bigEvery && n % opts.bigEvery === 0 ? 400 : 0;
      const poison = opts.poison !== undefined && opts.poison.tenant === t.index && n === 2;
      const text = poison ? opts.poison!.text : docText(t, n, big);
      const up = await call(base, 'POST', '/v1/documents', t.auth, { filename: `${opts.tag}-${n}.md`, text });
      count('upload', up.code);
      if (up.status === 202) {
        acks.push({ tenant: t.index, kind: 'upload', documentId: up.json.id, position: up.json.position, at: Date.now(), ...(poison ? { poison } : {}) });
        if (!poison) live.push(up.json.id);
      }
      if (n % 3 === 0 && live.length > 2) {
        const victim = live.shift()!;
        const del = await call(base, 'DELETE', `/v1/documents/${victim}`, t.auth);
        count('delete', del.code);
        if (del.status === 204) acks.push({ tenant: t.index, kind: 'delete', documentId: victim, at: Date.now() });
        // Not acknowledged, yet possibly applied (e.g. a 500 after the append): its document may be
        // listed or not; the store and isolation checks still cover it.
        else uncertain.add(victim);
      }
      count('search', (await call(base, 'POST', '/v1/search', t.auth, { query: `${t.marker} vacation`, top_k: 5 })).code);
      if (n % 2 === 0) count('ask', (await call(base, 'POST', '/v1/ask', t.auth, { question: `How many days of vacation in ${t.marker}?`, top_k: 3 })).code);
      await sleep(opts.pauseMs ?? 40);
    }
  });
  return {
    acks,
    statuses,
    uncertain,
    ackedSince: (t) => acks.filter((a) => a.at >= t).length,
    firstAckAfter: (t) => acks.find((a) => a.at >= t)?.at ?? null,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

// ---- checks ----------------------------------------------------------------------------------------

export interface Verdict {
  acked: number;
  /** Acknowledged but absent from the store, or contradicted by the catalog (listed after an acknowledged delete, missing after an acknowledged upload). */
  lost: number;
  lostDetail: string[];
  duplicated: number;
  pending: number;
  failedDocuments: string[];
  leaks: number;
  projectionsBehind: string[];
}

/** Head of the store's global order (what projections must reach). */
export async function storeHead(db: Pool): Promise<string> {
  const r = await db.query<{ xid: string; gp: string }>('SELECT transaction_id::text AS xid, global_position::text AS gp FROM es.events ORDER BY transaction_id DESC, global_position DESC LIMIT 1');
  const row = r.rows[0];
  return row ? encodePosition(row.xid, row.gp) : '';
}

/** Each acknowledged command's event, counted in the store (0 = lost, >1 = duplicated). */
export async function countAcked(db: Pool, tenants: Tenant[], acks: Ack[]): Promise<{ lost: Ack[]; duplicated: Ack[]; wrongPosition: Ack[] }> {
  const lost: Ack[] = [];
  const duplicated: Ack[] = [];
  const wrongPosition: Ack[] = [];
  for (const a of acks) {
    const tenant = tenants[a.tenant]!;
    const stream = `document-${tenant.id}.${a.documentId}`;
    const type = a.kind === 'upload' ? 'DocumentUploaded' : 'DocumentDeleted';
    const r = await db.query<{ gp: string }>('SELECT global_position::text AS gp FROM es.events WHERE stream_id = $1 AND type = $2', [stream, type]);
    if (r.rows.length === 0) lost.push(a);
    else if (r.rows.length > 1) duplicated.push(a);
    else if (a.position && decodePosition(a.position)[1] !== r.rows[0]!.gp) wrongPosition.push(a);
  }
  return { lost, duplicated, wrongPosition };
}

async function listDocuments(base: string, t: Tenant): Promise<{ id: string; status: string }[]> {
  const out: { id: string; status: string }[] = [];
  let cursor: string | null = null;
  do {
    const r = await call(base, 'GET', `/v1/documents?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, t.auth);
    if (r.status !== 200) throw new Error(`GET /v1/documents for ${t.slug}: ${r.code}`);
    out.push(...(r.json.items as { id: string; status: string }[]));
    cursor = r.json.next_cursor;
  } while (cursor);
  return out;
}

/**
 * After the load stopped: documents leave `pending` (bounded), then every projection reaches the
 * store's head (`caughtUp` decides how for the deployment), then the store is checked for every
 * acknowledged command and each tenant searches for every other tenant's marker.
 */
export async function verify(
  base: string,
  db: Pool,
  tenants: Tenant[],
  acks: Ack[],
  caughtUp: (head: string) => Promise<string[]>,
  opts: { timeoutMs?: number; uncertain?: Set<string> } = {},
): Promise<Verdict> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const deleted = new Set(acks.filter((a) => a.kind === 'delete').map((a) => a.documentId));
  let behind: string[] = [];
  const projectionsAtHead = () =>
    until('projections at the store head', async () => {
      await sleep(300); // buffered activity records (ACTIVITY_FLUSH_MS 250) reach the store first
      behind = await caughtUp(await storeHead(db));
      return behind.length === 0;
    }, timeoutMs, 500).catch(() => undefined);
  // A 202 waits for the catalog CONSISTENCY_WAIT_MS at most: a lagging projection (Kafka consumers
  // rejoining) has the document later. So: read models at the head first, then the catalog.
  await projectionsAtHead();
  let docs: { id: string; status: string; tenant: number }[] = [];
  let catalogDetail: string[] = [];
  const settled = await until('documents settled', async () => {
    docs = [];
    for (const t of tenants) for (const d of await listDocuments(base, t)) docs.push({ ...d, tenant: t.index });
    // Acknowledged uploads not deleted must be listed by their tenant; acknowledged deletes must not.
    const listed = new Set(docs.map((d) => `${d.tenant}/${d.id}`));
    catalogDetail = [];
    for (const a of acks) {
      const key = `${a.tenant}/${a.documentId}`;
      if (a.kind === 'upload' && !deleted.has(a.documentId) && !opts.uncertain?.has(a.documentId) && !listed.has(key)) catalogDetail.push(`upload ${a.documentId} not listed`);
      if (a.kind === 'delete' && listed.has(key)) catalogDetail.push(`delete ${a.documentId} still listed`);
    }
    return catalogDetail.length === 0 && docs.every((d) => d.status !== 'pending');
  }, timeoutMs, 500).catch(() => false);
  const pending = settled ? 0 : docs.filter((d) => d.status === 'pending').length;
  const missingFromCatalog = catalogDetail.length;
  // Indexing outcomes (DocumentIndexed) were appended meanwhile: the read models reach them too.
  await projectionsAtHead();
  const { lost, duplicated, wrongPosition } = await countAcked(db, tenants, acks);
  // Isolation: another tenant's marker finds nothing of that tenant, nor does a GET of its ids.
  const owner = new Map(docs.map((d) => [d.id, d.tenant]));
  let leaks = 0;
  for (const a of tenants) {
    for (const b of tenants) {
      if (a === b) continue;
      for (const mode of ['keyword', 'hybrid']) {
        const r = await call(base, 'POST', '/v1/search', a.auth, { query: b.marker, top_k: 20, mode });
        if (r.status !== 200) throw new Error(`isolation search ${a.slug}: ${r.code}`);
        for (const hit of r.json.results as { document_id: string; text: string }[]) {
          if ((owner.get(hit.document_id) ?? a.index) !== a.index || hit.text.includes(b.marker)) leaks++;
        }
      }
      const theirs = docs.find((d) => d.tenant === b.index);
      if (theirs) {
        const r = await call(base, 'GET', `/v1/documents/${theirs.id}`, a.auth);
        if (r.status !== 404) leaks++;
      }
    }
  }
  return {
    acked: acks.length,
    lost: lost.length + missingFromCatalog,
    lostDetail: [...lost.map((a) => `${a.kind} ${a.documentId} not in the store`), ...catalogDetail],
    duplicated: duplicated.length + wrongPosition.length,
    pending,
    failedDocuments: docs.filter((d) => d.status === 'failed').map((d) => d.id),
    leaks,
    projectionsBehind: behind,
  };
}

/** Embedded deployments: the gateway's own projections, by GET /v1/admin/projections. */
export function caughtUpByApi(base: string): (head: string) => Promise<string[]> {
  return async (head) => {
    const r = await call(base, 'GET', '/v1/admin/projections', { Authorization: `Bearer ${ADMIN}` });
    if (r.status !== 200) return [`GET /v1/admin/projections ${r.code}`];
    return (r.json.items as { name: string; position: string; state: string }[])
      .filter((p) => p.state === 'failed' || p.position < head)
      .map((p) => `${p.name} at ${p.position || 0} (${p.state}) < ${head}`);
  };
}

/** pg_terminate_backend of every session on the product's database but the suite's own, `rounds` times. */
export async function terminateProductConnections(db: Pool, dbName: string, rounds = 3, gapMs = 700): Promise<number> {
  let killed = 0;
  for (let i = 0; i < rounds; i++) {
    const r = await db.query<{ n: string }>(
      `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> 'fault-suite'`,
      [dbName],
    );
    killed += Number(r.rows[0]!.n);
    await sleep(gapMs);
  }
  return killed;
}

// ---- one fault, start to verdict ------------------------------------------------------------------

/** Waits until the load has `n` more acknowledged commands than now (bounded). */
export function moreAcks(load: Load, n: number, timeoutMs = 60_000): Promise<boolean> {
  const target = load.acks.length + n;
  return until(`${n} more acknowledged commands (statuses so far ${JSON.stringify(load.statuses)})`, async () => load.acks.length >= target, timeoutMs, 50);
}

/** When the fault began, when its cause was lifted (server or process started again), when it ended. */
export interface FaultWindow {
  start: number;
  lifted: number;
  end: number;
}

/**
 * After a fault: a few more acknowledged commands (the product serves again), stop the load,
 * verify, print and record the row. Recovery = fault start to the first acknowledgement after
 * the cause was lifted.
 */
export async function finishFault(
  d: { base: string; db: Pool; tenants: Tenant[]; caughtUp: (head: string) => Promise<string[]> },
  load: Load,
  row: { fault: string; profile: string; window: FaultWindow; notes?: string; /** When the product had recovered, if the client cannot see it (a relay's takeover). */ recoveredAt?: Promise<number> },
): Promise<Verdict> {
  await moreAcks(load, 6, 90_000);
  await load.stop();
  const v = await verify(d.base, d.db, d.tenants, load.acks, d.caughtUp, { uncertain: load.uncertain });
  const firstAfter = row.recoveredAt ? await row.recoveredAt : load.firstAckAfter(row.window.lifted);
  report({
    fault: row.fault,
    profile: row.profile,
    acked: v.acked,
    ackedDuringFault: load.acks.filter((a) => a.at >= row.window.start && a.at < row.window.end).length,
    lost: v.lost,
    duplicated: v.duplicated,
    pending: v.pending,
    leaks: v.leaks,
    recoverMs: firstAfter === null ? null : Math.max(0, firstAfter - row.window.start),
    verdictMs: Date.now() - row.window.start,
    statuses: load.statuses,
    notes: [row.notes, v.projectionsBehind.length ? `behind: ${v.projectionsBehind.join('; ')}` : '', v.lostDetail.length ? `lost: ${v.lostDetail.join('; ')}` : '', load.uncertain.size ? `${load.uncertain.size} deletes not acknowledged (outcome unknown to the client)` : '']
      .filter(Boolean)
      .join('; ') || undefined,
  });
  return v;
}

/** The invariants every fault must keep (`failed`: the documents expected to end failed). */
export function expectClean(v: Verdict, failed: string[] = []): void {
  expect({ lost: v.lost, duplicated: v.duplicated, pending: v.pending, leaks: v.leaks, behind: v.projectionsBehind }).toEqual({ lost: 0, duplicated: 0, pending: 0, leaks: 0, behind: [] });
  expect([...v.failedDocuments].sort()).toEqual([...failed].sort());
  expect(v.acked).toBeGreaterThan(10);
}

// ---- results ---------------------------------------------------------------------------------------

export interface FaultRow {
  fault: string;
  profile: string;
  acked: number;
  ackedDuringFault: number;
  lost: number;
  duplicated: number;
  pending: number;
  leaks: number;
  recoverMs: number | null;
  /** From the fault's start to the end of the checks. */
  verdictMs: number;
  statuses: Record<string, number>;
  notes?: string;
}

/** One line on stdout, one file per scenario, and test-output/faults.json rebuilt from all of them. */
export function report(row: FaultRow): void {
  const codes = Object.entries(row.statuses).sort().map(([k, v]) => `${k}:${v}`).join(' ');
  process.stdout.write(
    `[fault] ${row.fault} | acked ${row.acked} (during fault ${row.ackedDuringFault}) | lost ${row.lost} | duplicated ${row.duplicated} | pending ${row.pending} | leaks ${row.leaks} | recover ${row.recoverMs ?? '-'} ms | checked after ${row.verdictMs} ms | ${codes}\n`,
  );
  mkdirSync(OUT_DIR, { recursive: true });
  const slug = row.fault.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  writeFileSync(join(OUT_DIR, `${slug}.json`), JSON.stringify(row, null, 2));
  const rows = readdirSync(OUT_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(OUT_DIR, f), 'utf8')) as FaultRow);
  const tmp = join(OUT_DIR, '..', `faults.json.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify({ written: new Date().toISOString(), rows }, null, 2));
  renameSync(tmp, join(OUT_DIR, '..', 'faults.json'));
}
