/**
 * Retrieval-quality evaluation through the product's public HTTP API.
 *
 *   npm run eval -- <collection folder> [--base-url http://127.0.0.1:3000] [--admin-token T]
 *                   [--split tune|test|all] [--limit-queries N] [--out bench/results]
 *
 * The folder is in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv). Without
 * --base-url the product is started in-process on a throw-away data directory. The tool
 * provisions a throw-away tenant, uploads every corpus document, waits until all are indexed,
 * runs every judged query in the keyword, semantic and hybrid modes, scores nDCG@10 (linear
 * gains, trec_eval style), recall@10 and MRR@10, prints a table and writes a JSON report.
 * Run with --help for every option.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { mean, mrrAt, ndcgAt, percentile, recallAt } from './metrics';

// ---------------------------------------------------------------------------------------------
// Options

const MODES = ['keyword', 'semantic', 'hybrid'] as const;
type Mode = (typeof MODES)[number];
const SPLITS = ['tune', 'test', 'all'] as const;
type Split = (typeof SPLITS)[number];
const CUTOFF = 10;
/**
 * Chunks asked per query. Results are chunks and the metrics score documents: a document with
 * several chunks in the top 10 would leave fewer than 10 documents to score, so ask for more
 * and keep the first 10 distinct documents (ranked by their best chunk).
 */
const DEFAULT_TOP_K = 3 * CUTOFF;

interface Options {
  folder: string;
  baseUrl: string | null;
  adminToken: string | null;
  split: Split;
  limitQueries: number | null;
  out: string;
  qrels: string;
  topK: number;
  concurrency: number;
  queryConcurrency: number;
  readyTimeoutS: number;
  modes: Mode[];
  perQuery: boolean;
}

const USAGE = `usage: npm run eval -- <collection folder> [options]

  --base-url URL          measure a running product (default: start one in-process)
  --admin-token T         operator token for --base-url (default: $ADMIN_TOKEN)
  --split tune|test|all   which query half to report next to "all" (default: all)
  --limit-queries N       only the first N judged queries (file order)
  --out DIR               where the JSON report goes (default: bench/results)
  --qrels NAME            qrels/<NAME>.tsv (default: test)
  --top-k N               top_k sent to /v1/search (default: 30); results are deduplicated
                          per document and cut to 10 before scoring
  --modes a,b             subset of keyword,semantic,hybrid (default: all three)
  --concurrency N         parallel uploads (default: 8)
  --query-concurrency N   parallel searches (default: 1, so latencies are not queued)
  --ready-timeout S       give up waiting for indexing after S seconds (default: 3600)
  --no-per-query          leave per-query rankings out of the JSON report
`;

function parseOptions(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'base-url': { type: 'string' },
      'admin-token': { type: 'string' },
      split: { type: 'string', default: 'all' },
      'limit-queries': { type: 'string' },
      out: { type: 'string', default: 'bench/results' },
      qrels: { type: 'string', default: 'test' },
      'top-k': { type: 'string', default: String(DEFAULT_TOP_K) },
      modes: { type: 'string', default: MODES.join(',') },
      concurrency: { type: 'string', default: '8' },
      'query-concurrency': { type: 'string', default: '1' },
      'ready-timeout': { type: 'string', default: '3600' },
      'no-per-query': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (positionals.length !== 1) throw new UsageError('give exactly one collection folder');
  const posInt = (name: string, raw: string | undefined, min = 1): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
    return n;
  };
  const split = values.split as string;
  if (!(SPLITS as readonly string[]).includes(split)) throw new UsageError(`--split must be one of ${SPLITS.join(', ')}`);
  const modes = String(values.modes)
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new UsageError(`unknown mode ${JSON.stringify(m)}; modes: ${MODES.join(', ')}`);
  const baseUrl = values['base-url'] ? String(values['base-url']).replace(/\/+$/, '') : null;
  const adminToken = values['admin-token'] ?? (baseUrl ? process.env.ADMIN_TOKEN || null : null);
  if (baseUrl && !adminToken) throw new UsageError('--base-url needs --admin-token (or ADMIN_TOKEN in the environment) to provision a tenant');
  return {
    folder: resolve(positionals[0]!),
    baseUrl,
    adminToken,
    split: split as Split,
    limitQueries: values['limit-queries'] !== undefined ? posInt('limit-queries', values['limit-queries']) : null,
    out: resolve(String(values.out)),
    qrels: String(values.qrels),
    topK: posInt('top-k', values['top-k']),
    concurrency: posInt('concurrency', values.concurrency),
    queryConcurrency: posInt('query-concurrency', values['query-concurrency']),
    readyTimeoutS: posInt('ready-timeout', values['ready-timeout']),
    modes: modes as Mode[],
    perQuery: !values['no-per-query'],
  };
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// Collection (BEIR layout)

interface CorpusDoc {
  id: string;
  text: string;
}

interface Query {
  id: string;
  text: string;
}

/** Streams corpus.jsonl: one {_id, title, text} per line. */
async function* readCorpus(file: string, onSkip: (id: string, why: string) => void): AsyncGenerator<CorpusDoc> {
  const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let line = 0;
  for await (const raw of rl) {
    line++;
    if (!raw.trim()) continue;
    let rec: { _id?: unknown; title?: unknown; text?: unknown };
    try {
      rec = JSON.parse(raw);
    } catch {
      throw new Error(`${file}:${line}: not JSON`);
    }
    if (rec._id === undefined || rec._id === null) throw new Error(`${file}:${line}: no _id`);
    const id = String(rec._id);
    const title = typeof rec.title === 'string' ? rec.title.trim() : '';
    const body = typeof rec.text === 'string' ? rec.text.trim() : '';
    const text = title && body ? `${title}\n\n${body}` : title || body;
    if (!text) {
      onSkip(id, 'empty title and text');
      continue;
    }
    yield { id, text };
  }
}

function readJsonl<T>(file: string): T[] {
  return readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as T;
      } catch {
        throw new Error(`${file}:${i + 1}: not JSON`);
      }
    });
}

/** qrels TSV: query-id, corpus-id, grade (an optional header line; TREC 4-column lines accepted). */
function readQrels(file: string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((line, i) => {
      if (!line.trim()) return;
      const cols = line.split(/\t| +/).filter((c) => c !== '');
      // BEIR: qid docid grade; TREC: qid 0 docid grade.
      const [qid, docid, grade] = cols.length >= 4 ? [cols[0], cols[2], cols[3]] : [cols[0], cols[1], cols[2]];
      const g = Number(grade);
      if (!Number.isFinite(g)) {
        if (i === 0) return; // header
        throw new Error(`${file}:${i + 1}: grade ${JSON.stringify(grade)} is not a number`);
      }
      if (!qid || !docid) throw new Error(`${file}:${i + 1}: expected query-id, corpus-id, grade`);
      let m = out.get(qid);
      if (!m) out.set(qid, (m = new Map()));
      m.set(docid, g);
    });
  return out;
}

/** Deterministic halves: the first byte of sha256(query id), even -> tune, odd -> test. */
const SPLIT_RULE = 'sha256(query id)[0] even -> tune, odd -> test';
function splitOf(queryId: string): 'tune' | 'test' {
  return (createHash('sha256').update(queryId, 'utf8').digest()[0]! & 1) === 0 ? 'tune' : 'test';
}

// ---------------------------------------------------------------------------------------------
// HTTP client: built-in fetch, bounded retries on 429 (Retry-After), 502/503/504, network errors.

class HttpError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    const detail = body && typeof body === 'object' ? ((body as { detail?: string; title?: string }).detail ?? (body as { title?: string }).title) : String(body ?? '');
    super(`${method} ${path} -> ${status}${detail ? `: ${detail}` : ''}`);
  }
}

interface HttpStats {
  requests: number;
  retries: number;
  rateLimited: number;
  transient: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

function retryAfterMs(header: string | null): number | null {
  if (!header) return null;
  const s = Number(header);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null;
}

class Http {
  readonly stats: HttpStats = { requests: 0, retries: 0, rateLimited: 0, transient: 0 };
  constructor(
    readonly baseUrl: string,
    private readonly signal: AbortSignal,
    private readonly opts = { maxRateLimited: 20, maxTransient: 5, timeoutMs: 180_000 },
  ) {}

  /**
   * One request with retries. `ms` is the duration of the attempt that succeeded (waiting for
   * a retry is not counted). `retryNetwork: false` for commands that must not run twice.
   */
  async call<T>(
    method: string,
    path: string,
    o: { token?: string; body?: unknown; ok?: number[]; retryNetwork?: boolean } = {},
  ): Promise<{ status: number; body: T; ms: number }> {
    const ok = o.ok ?? [200, 201, 202, 204];
    let rateLimited = 0;
    let transient = 0;
    for (;;) {
      if (this.signal.aborted) throw this.signal.reason;
      const headers: Record<string, string> = { accept: 'application/json' };
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      if (o.body !== undefined) headers['content-type'] = 'application/json';
      const started = performance.now();
      let res: Response;
      this.stats.requests++;
      try {
        res = await fetch(this.baseUrl + path, {
          method,
          headers,
          body: o.body === undefined ? undefined : JSON.stringify(o.body),
          signal: AbortSignal.any([this.signal, AbortSignal.timeout(this.opts.timeoutMs)]),
        });
      } catch (err) {
        if (this.signal.aborted) throw this.signal.reason;
        if (o.retryNetwork === false || ++transient > this.opts.maxTransient) {
          throw new Error(`${method} ${path}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause?: Error }).cause!.message})` : ''}`);
        }
        this.stats.transient++;
        this.stats.retries++;
        await sleep(backoff(transient), this.signal);
        continue;
      }
      const text = await res.text();
      const ms = performance.now() - started;
      let body: unknown = text;
      if (text && (res.headers.get('content-type') ?? '').includes('json')) {
        try {
          body = JSON.parse(text);
        } catch {
          /* keep the text */
        }
      }
      if (ok.includes(res.status)) return { status: res.status, body: body as T, ms };
      if (res.status === 429 && ++rateLimited <= this.opts.maxRateLimited) {
        this.stats.rateLimited++;
        this.stats.retries++;
        const wait = retryAfterMs(res.headers.get('retry-after')) ?? backoff(rateLimited);
        await sleep(Math.min(60_000, wait) + Math.random() * 100, this.signal);
        continue;
      }
      if ([502, 503, 504].includes(res.status) && ++transient <= this.opts.maxTransient) {
        this.stats.transient++;
        this.stats.retries++;
        const wait = retryAfterMs(res.headers.get('retry-after')) ?? backoff(transient);
        await sleep(Math.min(30_000, wait), this.signal);
        continue;
      }
      throw new HttpError(method, path, res.status, body);
    }
  }
}

const backoff = (attempt: number) => Math.min(10_000, 250 * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);

/** Runs `fn` over `items` with at most `n` in flight. Async generators hand out items one at a time. */
async function forEachConcurrent<T>(items: AsyncIterable<T> | Iterable<T>, n: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = Symbol.asyncIterator in items ? (items as AsyncIterable<T>)[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]();
  let failed: unknown = null;
  const worker = async () => {
    while (failed === null) {
      const next = await it.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
  if (failed !== null) throw failed;
}

// ---------------------------------------------------------------------------------------------
// Product (in-process when no --base-url)

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s: Server = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

interface Target {
  baseUrl: string;
  adminToken: string;
  where: string;
  stop(): Promise<void>;
}

async function startInProcess(log: (m: string) => void): Promise<Target> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tr-eval-'));
  const adminToken = randomBytes(30).toString('base64url'); // 40 characters
  const extra: Record<string, string> = { DATA_DIR: dataDir, ADMIN_TOKEN: adminToken, PORT: '0', LOG_LEVEL: process.env.LOG_LEVEL || 'warn' };
  // Another embedded instance (a developer's `npm start`) may hold the default port.
  if (!process.env.DATABASE_URL && !process.env.EMBEDDED_PG_PORT) extra.EMBEDDED_PG_PORT = String(await freePort());
  const { loadEnv } = await import('../services/config');
  const { startProduct } = await import('../services/product');
  const env = loadEnv({ ...process.env, ...extra });
  log(`starting the product in-process (data dir ${dataDir}, ${process.env.DATABASE_URL ? 'DATABASE_URL' : 'embedded PostgreSQL'})...`);
  let product: Awaited<ReturnType<typeof startProduct>>;
  try {
    // The product's JSON log goes to stderr, so stdout carries only the table.
    product = await startProduct(env, { logger: pino({ level: env.logLevel, base: { service: 'tenant-rag' } }, pino.destination(2)) });
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const server = await product.listen(0, '127.0.0.1');
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    adminToken,
    where: 'in-process',
    async stop() {
      await product.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The evaluation

interface DocView {
  id: string;
  status: string;
  error?: string | null;
  chunk_count?: number;
}

interface SearchHit {
  document_id: string;
  chunk_index: number;
  score: number;
  filename: string;
}

interface ModeRun {
  ranking: string[];
  ms: number;
  ndcg: number;
  recall: number;
  mrr: number;
}

interface Scores {
  n: number;
  ndcg_at_10: number;
  recall_at_10: number;
  mrr_at_10: number;
}

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function main(): Promise<void> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    process.exit(64);
  }
  const log = (m: string) => process.stderr.write(`[eval] ${m}\n`);
  const collection = basename(opts.folder);
  const corpusFile = join(opts.folder, 'corpus.jsonl');
  const queriesFile = join(opts.folder, 'queries.jsonl');
  const qrelsFile = join(opts.folder, 'qrels', `${opts.qrels}.tsv`);
  for (const f of [corpusFile, queriesFile, qrelsFile]) if (!existsSync(f)) throw new UsageError(`missing ${f} (expected the BEIR layout)`);

  // Queries and judgements first: fail fast on a malformed collection.
  const qrels = readQrels(qrelsFile);
  const allQueries = readJsonl<{ _id: unknown; text: unknown }>(queriesFile).map((q) => ({ id: String(q._id), text: String(q.text ?? '').trim() }));
  const queryIds = new Set(allQueries.map((q) => q.id));
  const judged = allQueries.filter((q) => q.text && [...(qrels.get(q.id)?.values() ?? [])].some((g) => g > 0));
  const skippedNoRelevant = allQueries.length - judged.length;
  const qrelsWithoutQuery = [...qrels.keys()].filter((id) => !queryIds.has(id)).length;
  const queries: Query[] = opts.limitQueries ? judged.slice(0, opts.limitQueries) : judged;
  log(
    `${collection}: ${allQueries.length} queries, ${judged.length} with a relevant judgement ` +
      `(${skippedNoRelevant} skipped: none relevant${qrelsWithoutQuery ? `; ${qrelsWithoutQuery} judged query ids not in queries.jsonl` : ''}), evaluating ${queries.length}`,
  );

  const controller = new AbortController();
  let interrupted = 0;
  const onSignal = (sig: string) => {
    if (++interrupted > 1) process.exit(130);
    log(`${sig}: cleaning up (again to exit at once)...`);
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const startedAt = new Date();
  const target: Target = opts.baseUrl
    ? { baseUrl: opts.baseUrl, adminToken: opts.adminToken!, where: opts.baseUrl, stop: async () => undefined }
    : await startInProcess(log);
  const http = new Http(target.baseUrl, controller.signal);
  let tenantId: string | null = null;

  try {
    // ---- the product and its embedder ----
    const ready = await http.call<{ status: string; checks: Record<string, { ok: boolean; adapter?: string; detail?: string }> }>('GET', '/ready', { ok: [200, 503] });
    const emb = ready.body.checks?.embedder;
    const embedder = emb ? `${emb.adapter ?? '?'}${emb.detail ? ` (${emb.detail})` : ''}` : 'unknown';
    log(`product ${target.where}: ${ready.body.status}; embedder ${embedder}`);
    if (ready.body.status !== 'ready') {
      const bad = Object.entries(ready.body.checks ?? {}).filter(([, c]) => !c.ok);
      log(`warning: not ready: ${bad.map(([k, c]) => `${k}: ${c.detail ?? 'failed'}`).join('; ')}`);
    }

    // ---- a throw-away tenant ----
    const slug = `eval-${collection.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 30) || 'collection'}-${randomBytes(4).toString('hex')}`;
    const email = `eval@${slug}.example.com`;
    const password = randomBytes(18).toString('base64url');
    const corpusBytes = statSync(corpusFile).size;
    const created = await http.call<{ id: string }>('POST', '/v1/tenants', {
      token: target.adminToken,
      body: { name: `eval ${collection}`, slug, owner: { email, password } },
      ok: [201, 202],
      retryNetwork: false,
    });
    tenantId = created.body.id;
    let token = '';
    const login = async () => {
      token = (await http.call<{ access_token: string }>('POST', '/v1/auth/login', { body: { tenant: slug, email, password }, ok: [200] })).body.access_token;
    };
    await login();
    log(`tenant ${slug} (${tenantId}); corpus ${(corpusBytes / 1e6).toFixed(1)} MB`);
    /** Tenant routes: log in again once when the access token expires mid-run. */
    const api = async <T>(method: string, path: string, o: { body?: unknown; ok?: number[] } = {}) => {
      try {
        return await http.call<T>(method, path, { ...o, token });
      } catch (err) {
        if (err instanceof HttpError && err.status === 401) {
          await login();
          return http.call<T>(method, path, { ...o, token });
        }
        throw err;
      }
    };

    // ---- upload ----
    const docToCorpus = new Map<string, string>();
    const skipped: { id: string; why: string }[] = [];
    const uploadFailures: { id: string; error: string }[] = [];
    let uploaded = 0;
    let unchanged = 0;
    let firstUploadAt = 0;
    let lastProgress = 0;
    const progress = (line: () => string) => {
      if (Date.now() - lastProgress >= 2000) {
        lastProgress = Date.now();
        log(line());
      }
    };
    const safeName = (id: string) => `${id.replace(/[\u0000-\u001f\u007f/\\]/g, '_').slice(0, 250)}.txt`;
    await forEachConcurrent(
      readCorpus(corpusFile, (id, why) => skipped.push({ id, why })),
      opts.concurrency,
      async (doc) => {
        firstUploadAt ||= performance.now();
        try {
          const r = await api<{ id: string; status?: string }>('POST', '/v1/documents', {
            body: { filename: safeName(doc.id), external_id: doc.id, text: doc.text },
            ok: [200, 201, 202],
          });
          if (r.status === 200) unchanged++; // the same external id twice in the corpus
          docToCorpus.set(r.body.id, doc.id);
          uploaded++;
        } catch (err) {
          if (controller.signal.aborted) throw err;
          if (err instanceof HttpError && err.status !== 401 && err.status < 500) {
            uploadFailures.push({ id: doc.id, error: err.message });
            if (uploadFailures.length > 50 && uploaded === 0) throw err; // systematic, not per document
            return;
          }
          throw err;
        }
        progress(() => `uploaded ${uploaded} documents (${((performance.now() - firstUploadAt) / 1000).toFixed(0)} s)`);
      },
    );
    const uploadSeconds = (performance.now() - firstUploadAt) / 1000;
    log(`uploaded ${uploaded} documents in ${uploadSeconds.toFixed(1)} s${uploadFailures.length ? `, ${uploadFailures.length} rejected (first: ${uploadFailures[0]!.error})` : ''}${skipped.length ? `, ${skipped.length} skipped (empty)` : ''}`);

    // ---- wait for indexing ----
    const pending = new Set(docToCorpus.keys());
    const failed = new Map<string, string>();
    let chunks = 0;
    const settle = (d: DocView) => {
      if (!pending.has(d.id)) return;
      if (d.status === 'ready') {
        pending.delete(d.id);
        chunks += d.chunk_count ?? 0;
      } else if (d.status === 'failed') {
        pending.delete(d.id);
        failed.set(d.id, d.error ?? 'failed');
      }
    };
    const deadline = Date.now() + opts.readyTimeoutS * 1000;
    while (pending.size > 0 && Date.now() < deadline) {
      if (pending.size > 50) {
        // Many outstanding: sweep the listing (100 per page) instead of one GET per document.
        let cursor: string | null = null;
        do {
          const page: { body: { items: DocView[]; next_cursor: string | null } } = await api('GET', `/v1/documents?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
          page.body.items.forEach(settle);
          cursor = page.body.next_cursor;
        } while (cursor);
      } else {
        await forEachConcurrent([...pending], opts.concurrency, async (id) => {
          settle((await api<DocView>('GET', `/v1/documents/${id}`)).body);
        });
      }
      const done = docToCorpus.size - pending.size;
      progress(() => `indexed ${done}/${docToCorpus.size}${failed.size ? ` (${failed.size} failed)` : ''}, ${chunks} chunks, ${((performance.now() - firstUploadAt) / 1000).toFixed(0)} s`);
      if (pending.size > 0) await sleep(pending.size > 50 ? 2000 : 250, controller.signal);
    }
    const ingestSeconds = (performance.now() - firstUploadAt) / 1000;
    const readyCount = docToCorpus.size - pending.size - failed.size;
    log(
      `indexing: ${readyCount} ready, ${failed.size} failed${pending.size ? `, ${pending.size} STILL PENDING after ${opts.readyTimeoutS} s` : ''}; ` +
        `${chunks} chunks in ${ingestSeconds.toFixed(1)} s (${fmt(chunks / ingestSeconds, 1)} chunks/s)`,
    );
    if (failed.size) log(`first failure: ${docToCorpus.get(failed.keys().next().value!)}: ${failed.values().next().value}`);

    // ---- search ----
    const runs = new Map<string, Partial<Record<Mode, ModeRun>>>();
    const latencies: Record<Mode, number[]> = { keyword: [], semantic: [], hybrid: [] };
    let unmapped = 0;
    const toCorpusId = (h: SearchHit): string => {
      const id = docToCorpus.get(h.document_id);
      if (id !== undefined) return id;
      unmapped++;
      return `unmapped:${h.document_id}`;
    };
    for (const mode of opts.modes) {
      // One unmeasured warm-up (first query embedding, plan caches).
      await api('POST', '/v1/search', { body: { query: queries[0]?.text ?? 'warm up', top_k: opts.topK, mode } });
      let done = 0;
      await forEachConcurrent(queries, opts.queryConcurrency, async (q) => {
        const r = await api<{ results: SearchHit[] }>('POST', '/v1/search', { body: { query: q.text, top_k: opts.topK, mode } });
        const seen = new Set<string>();
        const ranking: string[] = [];
        for (const h of r.body.results) {
          const id = toCorpusId(h);
          if (seen.has(id)) continue;
          seen.add(id);
          ranking.push(id);
        }
        ranking.splice(CUTOFF);
        const judgements = qrels.get(q.id)!;
        const entry = runs.get(q.id) ?? {};
        entry[mode] = { ranking, ms: r.ms, ndcg: ndcgAt(ranking, judgements, CUTOFF), recall: recallAt(ranking, judgements, CUTOFF), mrr: mrrAt(ranking, judgements, CUTOFF) };
        runs.set(q.id, entry);
        latencies[mode].push(r.ms);
        done++;
        progress(() => `${mode}: ${done}/${queries.length} queries`);
      });
      log(`${mode}: ${queries.length} queries, p50 ${fmt(percentile(latencies[mode], 50), 1)} ms`);
    }

    // ---- scores ----
    const bySplit = (s: Split) => queries.filter((q) => s === 'all' || splitOf(q.id) === s);
    const score = (mode: Mode, s: Split): Scores => {
      const rs = bySplit(s).map((q) => runs.get(q.id)?.[mode]).filter((r): r is ModeRun => !!r);
      return { n: rs.length, ndcg_at_10: mean(rs.map((r) => r.ndcg)), recall_at_10: mean(rs.map((r) => r.recall)), mrr_at_10: mean(rs.map((r) => r.mrr)) };
    };
    const metrics = Object.fromEntries(opts.modes.map((m) => [m, Object.fromEntries(SPLITS.map((s) => [s, score(m, s)]))])) as Record<Mode, Record<Split, Scores>>;
    const latency = Object.fromEntries(
      opts.modes.map((m) => [m, { n: latencies[m].length, p50: percentile(latencies[m], 50), p99: percentile(latencies[m], 99), mean: mean(latencies[m]) }]),
    ) as Record<Mode, { n: number; p50: number; p99: number; mean: number }>;

    // ---- table ----
    // Always both halves and all: tune on one half, report the other (and all) beside it.
    const shown: Split[] = ['tune', 'test', 'all'];
    const lines: string[] = [];
    lines.push('');
    lines.push(`${collection}: ${queries.length} queries evaluated (${skippedNoRelevant} without a relevant judgement skipped${opts.limitQueries ? `, --limit-queries ${opts.limitQueries}` : ''}); split ${SPLIT_RULE}: tune ${bySplit('tune').length}, test ${bySplit('test').length}`);
    lines.push(`embedder: ${embedder}; ${readyCount} documents ready, ${failed.size} failed, ${pending.size} pending; ${chunks} chunks; ingest ${ingestSeconds.toFixed(1)} s (${fmt(chunks / ingestSeconds, 1)} chunks/s)`);
    lines.push('');
    const header = ['mode', 'split', 'n', 'nDCG@10', 'recall@10', 'MRR@10', 'p50 ms', 'p99 ms'];
    const rows: string[][] = [];
    for (const m of opts.modes) {
      for (const s of shown) {
        const sc = metrics[m][s];
        rows.push([m, s, String(sc.n), fmt(sc.ndcg_at_10), fmt(sc.recall_at_10), fmt(sc.mrr_at_10), fmt(latency[m].p50, 1), fmt(latency[m].p99, 1)]);
      }
    }
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const fmtRow = (r: string[]) => `| ${r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
    lines.push(fmtRow(header));
    lines.push(`|${widths.map((w, i) => (i < 2 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
    rows.forEach((r) => lines.push(fmtRow(r)));
    lines.push('');
    lines.push(`(latency: client-side wall time of POST /v1/search, top_k ${opts.topK}, ${opts.queryConcurrency} at a time, over all evaluated queries; HTTP retries ${http.stats.retries}, 429s ${http.stats.rateLimited})`);
    if (unmapped) lines.push(`warning: ${unmapped} search results named documents this run did not upload`);
    process.stdout.write(`${lines.join('\n')}\n`);

    // ---- JSON report ----
    const finishedAt = new Date();
    const report = {
      tool: 'bench/eval.ts',
      collection,
      folder: opts.folder,
      started_at: startedAt.toISOString(),
      finished_at: finishedAt.toISOString(),
      target: target.where,
      embedder,
      ready_checks: ready.body.checks,
      options: { split: opts.split, limit_queries: opts.limitQueries, qrels: opts.qrels, top_k: opts.topK, cutoff: CUTOFF, modes: opts.modes, concurrency: opts.concurrency, query_concurrency: opts.queryConcurrency },
      corpus: {
        uploaded,
        duplicate_ids: unchanged,
        skipped_empty: skipped.length,
        rejected: uploadFailures.length,
        rejected_examples: uploadFailures.slice(0, 20),
        ready: readyCount,
        failed: failed.size,
        failed_examples: [...failed].slice(0, 20).map(([id, error]) => ({ id: docToCorpus.get(id), error })),
        pending: pending.size,
      },
      ingest: {
        upload_seconds: uploadSeconds,
        seconds: ingestSeconds,
        chunks,
        chunks_per_second: chunks / ingestSeconds,
        documents_per_second: readyCount / ingestSeconds,
      },
      queries: { total: allQueries.length, with_relevant_judgement: judged.length, skipped_no_relevant: skippedNoRelevant, judged_ids_not_in_queries: qrelsWithoutQuery, evaluated: queries.length },
      split: { rule: SPLIT_RULE, reported: opts.split, tune: bySplit('tune').length, test: bySplit('test').length },
      metrics,
      latency_ms: latency,
      http: http.stats,
      unmapped_results: unmapped,
      ...(opts.perQuery
        ? {
            per_query: queries.map((q) => ({
              id: q.id,
              split: splitOf(q.id),
              runs: Object.fromEntries(
                Object.entries(runs.get(q.id) ?? {}).map(([m, r]) => [m, { ndcg_at_10: r.ndcg, recall_at_10: r.recall, mrr_at_10: r.mrr, ms: Math.round(r.ms * 10) / 10, ranking: r.ranking }]),
              ),
            })),
          }
        : {}),
    };
    mkdirSync(opts.out, { recursive: true });
    const stamp = finishedAt.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/:/g, '-');
    const file = join(opts.out, `eval-${collection}-${stamp}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    log(`report: ${file}`);
  } finally {
    if (tenantId) {
      // A fresh signal: the delete should still run after an interrupt.
      const cleanup = new Http(target.baseUrl, AbortSignal.timeout(60_000), { maxRateLimited: 3, maxTransient: 2, timeoutMs: 30_000 });
      await cleanup
        .call('DELETE', `/v1/tenants/${tenantId}`, { token: target.adminToken, ok: [200, 202, 204, 404] })
        .then(() => log(`tenant ${tenantId} deleted`))
        .catch((err: Error) => log(`could not delete tenant ${tenantId}: ${err.message}`));
    }
    await target.stop().catch((err: Error) => log(`stopping the product failed: ${err.message}`));
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`[eval] failed: ${err instanceof UsageError ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
    process.exit(err instanceof UsageError ? 64 : 1);
  },
);
