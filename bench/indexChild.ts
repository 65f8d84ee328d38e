/**
 * The many-tenants figure's server side (bench/indexScale.ts): one process holding the embedded
 * index (infra/vectors/embedded.ts, INDEX_MEMORY_MB from the environment) and the product's search
 * path (services/search/search.ts: keyword + vector + convex fusion + hydration), so that its
 * resident memory is the index's and not the loader's. Driven over IPC: `run` with the tenant ids
 * searches one tenant alone (warm), then every tenant once (cold: its first search loads it from
 * PostgreSQL, evicting others beyond the budget), then the most recently searched tenants again
 * (warm), and answers with the latencies, memory and the index's stats.
 */
import { readFileSync } from 'node:fs';
import { createPool } from '../infra/postgres/pool';
import { createEmbeddedIndex } from '../infra/vectors/embedded';
import { heapGrowth } from '../services/config';
import { limitHeapGrowth } from '../services/core/heap';
import type { Embedder } from '../services/core/ports';
import { search } from '../services/search/search';
import { ChunkGenerator } from './search';

export interface ChildResult {
  single: number[];
  cold: number[];
  warm: number[];
  warmLoads: number;
  rssAfterGc: number;
  heapAfterGc: number;
  /** The same after a full GC before any tenant was loaded (the process's own code and libraries). */
  rssBaseline: number;
  heapBaseline: number;
  hwm: number;
  rssSamples: number[];
  /** process.memoryUsage() after the final full GC: where the retained bytes are (V8 heap or buffers). */
  memAfterGc: NodeJS.MemoryUsage;
  stats: unknown;
}

/** Query texts mapped to vectors of the data's mixture: the search path embeds through this. */
export function mixtureEmbedder(id: string, queries: { text: string; v: Float32Array }[]): Embedder {
  const byText = new Map(queries.map((q) => [q.text, q.v]));
  return {
    id,
    dimensions: 384,
    semantic: true,
    embed: async (texts) => texts.map((t) => byText.get(t) ?? queries[0]!.v),
    countTokens: (t) => t.split(/\s+/).length,
    close: async () => undefined,
  };
}

const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) * 1024;

async function main(): Promise<void> {
  if (!process.send) throw new Error('bench/indexChild.ts runs as a child of bench/indexScale.ts');
  // As services/main.ts does for the product.
  limitHeapGrowth(heapGrowth(process.env.HEAP_GROWTH_PERCENT));
  const pool = createPool(process.env.DATABASE_URL!, { max: 4, applicationName: 'bench index child' });
  const embedderId = process.env.BENCH_EMBEDDER_ID!;
  const index = createEmbeddedIndex(pool, { embedderId: () => embedderId, memoryMb: Number(process.env.INDEX_MEMORY_MB) });
  const gen = new ChunkGenerator(777);
  const queries = Array.from({ length: 200 }, () => ({ text: gen.query(), v: gen.vector() }));
  const embedder = mixtureEmbedder(embedderId, queries);
  const once = async (tenantId: string, i: number) => {
    const t = performance.now();
    await search({ index, embedder }, tenantId, { query: queries[i % queries.length]!.text, topK: 10, mode: 'hybrid' });
    return performance.now() - t;
  };
  process.on('message', async (m: { cmd: string; tenants: string[]; searches: number }) => {
    if (m.cmd !== 'run') return;
    try {
      const { tenants, searches } = m;
      const g = (globalThis as { gc?: () => void }).gc;
      const gc = () => {
        g?.();
        g?.();
      };
      gc();
      const before = process.memoryUsage();
      for (let i = 0; i < 20; i++) await once(tenants[0]!, i);
      const single: number[] = [];
      for (let i = 0; i < searches; i++) single.push(await once(tenants[0]!, i));
      const cold: number[] = [];
      const rssSamples: number[] = [];
      for (let k = 1; k < tenants.length; k++) {
        cold.push(await once(tenants[k]!, k));
        if (k % 250 === 0) rssSamples.push(process.memoryUsage().rss);
      }
      // The 20 most recently searched tenants are loaded (unless 20 do not fit): search them again.
      const recent = tenants.slice(-20);
      const loadsBefore = index.stats!()!.loads!;
      const warm: number[] = [];
      for (let i = 0; i < searches; i++) warm.push(await once(recent[i % recent.length]!, i));
      const warmLoads = index.stats!()!.loads! - loadsBefore;
      gc();
      const mem = process.memoryUsage();
      const result: ChildResult = {
        single, cold, warm, warmLoads, rssAfterGc: mem.rss, heapAfterGc: mem.heapUsed + mem.external, rssBaseline: before.rss, heapBaseline: before.heapUsed + before.external, hwm: hwm(), rssSamples, memAfterGc: mem, stats: index.stats!(),
      };
      process.send!({ type: 'result', result });
    } catch (err) {
      process.send!({ type: 'error', error: (err as Error).stack ?? String(err) });
    } finally {
      await index.close();
      await pool.end();
      process.disconnect();
    }
  });
  process.send({ type: 'ready' });
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench index child failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  });
}
