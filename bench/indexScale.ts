/**
 * `npm run bench -- --only index,tenants`: the embedded vector/keyword index at scale, below the HTTP API
 * (rows go straight in through the KnowledgeIndex port, as the indexer writes them; searches run
 * the product's search path, services/search/search.ts: keyword + vector + convex fusion +
 * hydration from PostgreSQL, with query vectors drawn from the data's own mixture).
 *
 *   (a) `index`: one tenant of 100,000 chunks x 384 dims (--quick 10,000): hybrid top-10 p50/p99 and vector
 *       recall@10 against the exact scan, side by side for the exact scan, the HNSW graph and, when
 *       WEAVIATE_URL is set, Weaviate (infra/vectors/weaviate.ts) on the same chunks and queries;
 *   (b) `tenants`: 10,000 tenants x 100 chunks (--quick 300) on one node with INDEX_MEMORY_MB (512; --quick
 *       64): peak RSS of the serving process against budget + 300 MiB, a cold tenant's first
 *       search p99, a warm tenant's search p50 against the one-tenant figure. The serving side is
 *       a child process (bench/indexChild.ts) so that its memory is the index's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import type pg from 'pg';
import weaviate from 'weaviate-client';
import { createPool } from '../infra/postgres/pool';
import { migratePlatform } from '../infra/postgres/schema';
import { createEmbeddedIndex } from '../infra/vectors/embedded';
import { createTenantSchemas } from '../infra/vectors/indexFixtures';
import { createWeaviateIndex } from '../infra/vectors/weaviate';
import type { Candidate, KnowledgeIndex } from '../services/search/knowledgeIndex';
import { search } from '../services/search/search';
import { type ChildResult, mixtureEmbedder } from './indexChild';
import { heapGrowth } from '../services/config';
import { type Bench } from './harness';
import { ChunkGenerator, loadChunks } from './search';
import { failed, type Figure, fmtInt, fmtNum, latencyWithin, median, pct, skipped, summariseLatency } from './stats';

const EMBEDDER_ID = 'bench-mixture-384';
const MiB = 2 ** 20;
const key = (c: Candidate) => `${c.documentId}/${c.chunkIndex}`;

/** Figures go to `sink` as each is measured, so that a run stopped by its time limit still prints them. */
export async function indexBench(b: Bench, parts: { big: boolean; many: boolean }, sink: (f: Figure[]) => void): Promise<void> {
  const url = await b.createDatabase('bench_index');
  const pool = createPool(url, { max: 6, applicationName: 'bench index loader' });
  try {
    await migratePlatform(pool);
    if (parts.big) await bigTenant(b, pool, sink);
    if (parts.many) sink(await manyTenants(b, pool, url));
  } finally {
    await pool.end();
    await b.dropDatabase('bench_index').catch(() => undefined);
  }
}

async function waitFor(cond: () => boolean, seconds: number): Promise<boolean> {
  const until = performance.now() + seconds * 1000;
  while (!cond()) {
    if (performance.now() > until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

async function bigTenant(b: Bench, pool: pg.Pool, sink: (f: Figure[]) => void): Promise<void> {
  const quick = b.opts.quick;
  const N = quick ? 10_000 : 100_000;
  const Q = quick ? 100 : 300;
  const scale = `1 tenant x ${fmtInt(N)} chunks x 384 dims, ${Q} queries${quick ? ' (--quick; full: 100,000 x 300)' : ''}`;
  const base = { group: 'index', scale, target: 'hybrid p50 <= 10 ms, p99 <= 30 ms; recall@10 >= 0.95' };
  const tenantId = '00000000-0000-4000-8000-00000000a000';
  await createTenantSchemas(pool, [tenantId]);
  const gen = new ChunkGenerator(4242);
  b.log(`index: writing ${fmtInt(N)} chunks through the KnowledgeIndex port`);
  let t = performance.now();
  const loader = createEmbeddedIndex(pool, { embedderId: () => EMBEDDER_ID, hnswMinChunks: 0 });
  await loadChunks(pool, loader, gen, tenantId, EMBEDDER_ID, N / 500, 500, { concurrency: 2, batch: 500 });
  await loader.close();
  await pool.query('ANALYZE');
  const writeSeconds = (performance.now() - t) / 1000;
  const queries = Array.from({ length: Q }, () => ({ text: gen.query(), v: gen.vector() }));
  const embedder = mixtureEmbedder(EMBEDDER_ID, queries);

  const exact = createEmbeddedIndex(pool, { embedderId: () => EMBEDDER_ID, hnswMinChunks: 0, memoryMb: 8192 });
  const truth: Set<string>[] = [];
  /** Hybrid latencies and recall of one index over the queries (after 20 warm-up searches). */
  const measure = async (index: KnowledgeIndex) => {
    for (let i = 0; i < 20; i++) await search({ index, embedder }, tenantId, { query: queries[i]!.text, topK: 10, mode: 'hybrid' });
    const hybrid: number[] = [];
    const vector: number[] = [];
    let found = 0;
    for (const [i, q] of queries.entries()) {
      let s = performance.now();
      await search({ index, embedder }, tenantId, { query: q.text, topK: 10, mode: 'hybrid' });
      hybrid.push(performance.now() - s);
      s = performance.now();
      const got = await index.vector(tenantId, q.v, { topK: 10 });
      vector.push(performance.now() - s);
      if (truth[i]) found += got.filter((c) => truth[i]!.has(key(c))).length;
      else truth[i] = new Set(got.map(key));
    }
    return { hybrid, vector, recall: found / (10 * queries.length) };
  };
  const figure = (id: string, label: string, m: { hybrid: number[]; vector: number[]; recall: number }, notes: string[]): Figure => {
    const s = summariseLatency([m.hybrid]);
    const lat = latencyWithin(s, { p50: 10, p99: 30 });
    return {
      ...base,
      id,
      label,
      summary: s,
      verdict: lat === 'PASS' && m.recall >= 0.95 ? 'PASS' : 'MISS',
      compare: `recall@10 ${fmtNum(m.recall, 3)} (${m.recall >= 0.95 ? 'PASS' : 'MISS'}); vector top 10 alone p50 ${fmtNum(median(m.vector))} / p99 ${fmtNum(pct(m.vector, 99))} ms; hybrid ${lat}`,
      notes,
      raw: m,
    };
  };
  try {
    b.log('index: exact scan');
    t = performance.now();
    await exact.vector(tenantId, queries[0]!.v, { topK: 10 });
    const loadMs = performance.now() - t;
    const exactBytes = exact.stats!()!.bytes;
    const e = await measure(exact);
    sink([
      figure('index.exact', 'hybrid search top 10, embedded index, exact vector scan', { ...e, recall: 1 }, [
        `Rows written in ${fmtNum(writeSeconds)} s; the tenant loaded from PostgreSQL in ${fmtInt(loadMs)} ms (excluded), estimated ${fmtInt(exactBytes / MiB)} MiB. Recall 1 by definition: it is the reference.`,
        `Vector top 10 costs about ${fmtNum((median(e.vector) / N) * 1000, 2)} ms per 1,000 chunks scanned: the measure behind INDEX_HNSW_MIN_CHUNKS (default 5,000).`,
      ]),
    ]);
  } catch (err) {
    sink([failed({ ...base, id: 'index.exact', label: 'hybrid search, exact scan' }, err)]);
  }
  // The truth (the exact top 10 of every query) stays; the exact index's memory goes.
  await exact.close();

  const ann = createEmbeddedIndex(pool, { embedderId: () => EMBEDDER_ID, hnswMinChunks: 1, memoryMb: 8192 });
  try {
    b.log('index: HNSW graph');
    t = performance.now();
    await ann.vector(tenantId, queries[0]!.v, { topK: 10 });
    const loadMs = performance.now() - t;
    t = performance.now();
    const ready = await waitFor(() => ann.stats!()!.hnswTenants === 1, 30 * 60);
    const buildSeconds = (performance.now() - t) / 1000;
    if (!ready) throw new Error('the HNSW graph was not ready within 30 min');
    const st = ann.stats!()!;
    const via = st.hnswSearches!;
    const a = await measure(ann);
    const viaGraph = ann.stats!()!.hnswSearches! - via;
    sink([
      figure('index.hnsw', 'hybrid search top 10, embedded index, HNSW graph (usearch)', a, [
        `Loaded in ${fmtInt(loadMs)} ms, then the graph built in the background in ${fmtNum(buildSeconds)} s (exact scan meanwhile); estimated ${fmtInt(st.bytes / MiB)} MiB with the graph. ${viaGraph} of ${Q * 2 + 20} vector searches (warm-up included) went through the graph${viaGraph === Q * 2 + 20 ? ', none fell back to the exact scan' : ''}.`,
      ]),
    ]);
  } catch (err) {
    sink([failed({ ...base, id: 'index.hnsw', label: 'hybrid search, HNSW' }, err)]);
  } finally {
    await ann.close();
  }
  sink([await weaviatePeer(b, pool, figure, base, N, queries, embedder)]);
}

async function weaviatePeer(
  b: Bench,
  pool: pg.Pool,
  figure: (id: string, label: string, m: { hybrid: number[]; vector: number[]; recall: number }, notes: string[]) => Figure,
  base: { group: string; scale: string; target: string },
  N: number,
  queries: { text: string; v: Float32Array }[],
  embedder: ReturnType<typeof mixtureEmbedder>,
): Promise<Figure> {
  const id = 'index.weaviate';
  const label = 'hybrid search top 10, Weaviate (hybrid(), HNSW)';
  const url = process.env.WEAVIATE_URL;
  if (!url) return skipped({ ...base, id, label, reason: 'Weaviate: skipped, WEAVIATE_URL is not set (production profile: `set -a; source .env.infra; set +a`).' });
  const u = new URL(url);
  if (!['127.0.0.1', 'localhost'].includes(u.hostname)) return skipped({ ...base, id, label, reason: `Weaviate at ${u.hostname}: benchmarks target 127.0.0.1 only` });
  const collection = `BenchIndex${process.pid}`;
  const grpcPort = Number(process.env.WEAVIATE_GRPC_PORT || 50051);
  const tenantId = '00000000-0000-4000-8000-00000000b000';
  let wv: KnowledgeIndex | null = null;
  try {
    wv = await createWeaviateIndex({ url, grpcPort, pool, embedderId: () => EMBEDDER_ID, dimensions: 384, collection });
    await createTenantSchemas(pool, [tenantId]);
    await wv.ensureTenant(tenantId);
    // The same chunks (same generator seed) under another tenant id, written through the Weaviate adapter.
    b.log(`index: writing ${fmtInt(N)} chunks into Weaviate (and PostgreSQL)`);
    let t = performance.now();
    await loadChunks(pool, wv, new ChunkGenerator(4242), tenantId, EMBEDDER_ID, N / 500, 500, { concurrency: 2, batch: 500 });
    const loadSeconds = (performance.now() - t) / 1000;
    // Its own truth: the exact top 10 over this tenant's rows (document ids differ from the first tenant's).
    const exact = createEmbeddedIndex(pool, { embedderId: () => EMBEDDER_ID, hnswMinChunks: 0, memoryMb: 8192 });
    const wvTruth: Set<string>[] = [];
    for (const q of queries) wvTruth.push(new Set((await exact.vector(tenantId, q.v, { topK: 10 })).map(key)));
    await exact.close();
    const index = wv;
    for (let i = 0; i < 20; i++) await search({ index, embedder }, tenantId, { query: queries[i]!.text, topK: 10, mode: 'hybrid' });
    const hybrid: number[] = [];
    const vector: number[] = [];
    let found = 0;
    for (const [i, q] of queries.entries()) {
      t = performance.now();
      await search({ index, embedder }, tenantId, { query: q.text, topK: 10, mode: 'hybrid' });
      hybrid.push(performance.now() - t);
      t = performance.now();
      const got = await index.vector(tenantId, q.v, { topK: 10 });
      vector.push(performance.now() - t);
      found += got.filter((c) => wvTruth[i]!.has(key(c))).length;
    }
    return figure(id, label, { hybrid, vector, recall: found / (10 * queries.length) }, [
      `Weaviate ${url} through infra/vectors/weaviate.ts (one hybrid() call, server-side fusion; its vector() also reads the ready versions from PostgreSQL); ${fmtInt(N)} chunks written in ${fmtNum(loadSeconds)} s (${fmtInt(N / loadSeconds)} chunks/s, PostgreSQL rows included). Recall against the exact scan of the same rows.`,
    ]);
  } catch (err) {
    return failed({ ...base, id, label }, err);
  } finally {
    await wv?.dropTenant(tenantId).catch(() => undefined);
    await wv?.close().catch(() => undefined);
    try {
      const client = await weaviate.connectToLocal({ host: u.hostname, port: Number(u.port || 80), grpcPort });
      await client.collections.delete(collection);
      await client.close();
    } catch {
      /* best effort */
    }
  }
}

async function manyTenants(b: Bench, pool: pg.Pool, url: string): Promise<Figure[]> {
  const quick = b.opts.quick;
  const T = quick ? 300 : 10_000;
  const CHUNKS = 100;
  const budgetMb = quick ? 64 : 512;
  const searches = quick ? 100 : 300;
  const scale = `${fmtInt(T)} tenants x ${CHUNKS} chunks, INDEX_MEMORY_MB=${budgetMb}, HEAP_GROWTH_PERCENT=${heapGrowth(process.env.HEAP_GROWTH_PERCENT)}${quick ? ' (--quick; full: 10,000 tenants, 512 MiB)' : ''}`;
  const base = { group: 'index', scale };
  const ids = Array.from({ length: T }, (_, i) => `00000000-0000-4000-8000-${(0x100000 + i).toString(16).padStart(12, '0')}`);
  b.log(`index: provisioning ${fmtInt(T)} tenant schemas with ${CHUNKS} chunks each`);
  let t = performance.now();
  const gen = new ChunkGenerator(99);
  const loader = createEmbeddedIndex(pool, { embedderId: () => EMBEDDER_ID, hnswMinChunks: 0 });
  let next = 0;
  let provisioned = 0;
  await Promise.all(
    Array.from({ length: 3 }, async () => {
      while (next < ids.length) {
        const tenantId = ids[next++]!;
        await createTenantSchemas(pool, [tenantId]);
        await loadChunks(pool, loader, gen, tenantId, EMBEDDER_ID, 1, CHUNKS, { concurrency: 1 });
        if (++provisioned % 1000 === 0) b.log(`index: ${fmtInt(provisioned)} tenants provisioned`);
      }
    }),
  );
  await loader.close();
  await pool.query('ANALYZE');
  const provisionSeconds = (performance.now() - t) / 1000;
  b.log(`index: ${fmtInt(T)} tenants in ${fmtNum(provisionSeconds)} s; searching them from a child process`);
  t = performance.now();
  let child: ChildProcess | null = null;
  try {
    child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', join(__dirname, 'indexChild.ts')], {
      cwd: join(__dirname, '..'),
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DATABASE_URL: url, INDEX_MEMORY_MB: String(budgetMb), BENCH_EMBEDDER_ID: EMBEDDER_ID, ...(process.env.HEAP_GROWTH_PERCENT ? { HEAP_GROWTH_PERCENT: process.env.HEAP_GROWTH_PERCENT } : {}) },
    });
    const c = child;
    const r = await new Promise<ChildResult>((resolve, reject) => {
      c.on('message', (m: { type: string; result?: ChildResult; error?: string }) => {
        if (m.type === 'ready') c.send({ cmd: 'run', tenants: ids, searches });
        else if (m.type === 'result') resolve(m.result!);
        else if (m.type === 'error') reject(new Error(m.error));
      });
      c.once('exit', (code) => reject(new Error(`index child exited with ${code}`)));
    });
    const searchSeconds = (performance.now() - t) / 1000;
    const stats = r.stats as { bytes: number; tenantsLoaded: number; evictions: number; loads: number };
    const single = summariseLatency([r.single]);
    const cold = summariseLatency([r.cold]);
    const warm = summariseLatency([r.warm]);
    const peak = r.hwm / MiB;
    const ratio = warm.median / single.median;
    return [
      {
        ...base,
        id: 'index.tenants.memory',
        label: 'peak RSS of the serving process, every tenant searched once',
        summary: { kind: 'value', unit: 'MiB', runs: 1, samples: 1, median: peak, p99: peak, spread: null },
        target: `<= budget + 300 MiB (${budgetMb + 300} MiB)`,
        verdict: peak <= budgetMb + 300 ? 'PASS' : 'MISS',
        compare: `after a full GC: RSS ${fmtInt(r.rssAfterGc / MiB)} MiB (${fmtInt(r.rssBaseline / MiB)} before any tenant); JS heap + buffers retained ${fmtInt((r.heapAfterGc - r.heapBaseline) / MiB)} MiB against the index's estimate of ${fmtInt(stats.bytes / MiB)} MiB for ${fmtInt(stats.tenantsLoaded)} loaded tenants`,
        notes: [
          `Tenants provisioned (schema by the product's createTenantSchema, rows through the KnowledgeIndex port) in ${fmtNum(provisionSeconds)} s; searched in ${fmtNum(searchSeconds)} s. ${fmtInt(stats.loads)} loads, ${fmtInt(stats.evictions)} evictions.`,
          `RSS every 250 tenants: ${r.rssSamples.map((x) => fmtInt(x / MiB)).join(', ')} MiB.`,
        ],
        raw: r,
      },
      {
        ...base,
        id: 'index.tenants.cold',
        label: "a cold tenant's first search (loads it from PostgreSQL), hybrid top 10",
        summary: cold,
        target: 'p99 <= 1000 ms',
        verdict: latencyWithin(cold, { p99: 1000 }),
        compare: '',
        notes: [],
      },
      {
        ...base,
        id: 'index.tenants.warm',
        label: 'a warm tenant\'s search among them, hybrid top 10',
        summary: warm,
        target: 'p50 within 20% of one tenant alone',
        verdict: ratio <= 1.2 && r.warmLoads === 0 ? 'PASS' : 'MISS',
        compare: `${fmtNum(ratio, 2)} x the one-tenant p50 (${fmtNum(single.median)} ms, p99 ${fmtNum(single.p99)} ms); ${r.warmLoads} reloads among the warm searches`,
        notes: ['The 20 most recently searched tenants, round robin; the one-tenant figure is the first tenant searched alone before any other was loaded.'],
      },
    ];
  } catch (err) {
    return [failed({ ...base, id: 'index.tenants', label: 'many tenants on one node', target: '' }, err)];
  } finally {
    if (child && child.exitCode === null) child.kill('SIGTERM');
  }
}
