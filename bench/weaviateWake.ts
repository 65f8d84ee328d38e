/**
 * What hibernation (WEAVIATE_IDLE_TENANT_SECONDS) costs the first request after a tenant wakes:
 * one shard of OBJECTS 384-d objects in a throw-away multi-tenant collection, hybrid top-10 while
 * ACTIVE, then ROUNDS times INACTIVE -> ACTIVE (what the adapter's activation does) and the first
 * hybrid query after it. Standalone, not part of `npm run bench` (it needs a Weaviate server):
 *
 *   set -a; source .env.infra; set +a; npx tsx bench/weaviateWake.ts [objects] [rounds]
 *
 * Bounded: at most 20,000 objects and 10 rounds; 127.0.0.1 only; the collection is deleted after.
 */
import weaviate, { configure } from 'weaviate-client';

const OBJECTS = Math.min(20_000, Number(process.argv[2] ?? 5000));
const ROUNDS = Math.min(10, Number(process.argv[3] ?? 5));
const DIMS = 384;

async function main(): Promise<void> {
  const url = new URL(process.env.WEAVIATE_URL ?? '');
  if (url.hostname !== '127.0.0.1' && url.hostname !== 'localhost') throw new Error('WEAVIATE_URL must be a local server (source .env.infra)');
  const client = await weaviate.connectToCustom({ httpHost: url.hostname, httpPort: Number(url.port), grpcHost: url.hostname, grpcPort: Number(process.env.WEAVIATE_GRPC_PORT) });
  const name = `BenchWake${Date.now()}`;
  try {
    await client.collections.create({
      name,
      multiTenancy: configure.multiTenancy({ enabled: true, autoTenantCreation: false, autoTenantActivation: false }),
      vectorizers: configure.vectors.selfProvided({ vectorIndexConfig: configure.vectorIndex.hnsw({ distanceMetric: 'cosine' }) }),
      properties: [{ name: 'text', dataType: 'text' }],
    });
    const coll = client.collections.get(name);
    await coll.tenants.create({ name: 'sleeper' });
    const shard = coll.withTenant('sleeper');
    const vector = () => Array.from({ length: DIMS }, () => Math.random() - 0.5);
    for (let i = 0; i < OBJECTS; i += 500) {
      const n = Math.min(500, OBJECTS - i);
      const r = await shard.data.insertMany(Array.from({ length: n }, (_, j) => ({ properties: { text: `chunk ${i + j} on topic ${(i + j) % 37} of the travel policy` }, vectors: vector() })));
      if (r.hasErrors) throw new Error(`insert failed: ${Object.values(r.errors)[0]?.message}`);
    }
    const q = vector();
    const timed = async (f: () => Promise<unknown>) => {
      const t = performance.now();
      await f();
      return performance.now() - t;
    };
    const query = () => shard.query.hybrid('topic 5 travel policy', { vector: q, limit: 10, alpha: 0.5 });
    const warm: number[] = [];
    for (let i = 0; i < 10; i++) warm.push(await timed(query));
    const activations: number[] = [];
    const firsts: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      await coll.tenants.update({ name: 'sleeper', activityStatus: 'INACTIVE' });
      activations.push(await timed(() => coll.tenants.update({ name: 'sleeper', activityStatus: 'ACTIVE' })));
      firsts.push(await timed(query));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const fmt = (xs: number[]) => `median ${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;
    process.stdout.write(
      `weaviate wake-up, one shard of ${OBJECTS} ${DIMS}-d objects, ${ROUNDS} rounds:\n` +
        `  warm hybrid top-10:            ${fmt(warm)}\n` +
        `  INACTIVE -> ACTIVE (update):   ${fmt(activations)}\n` +
        `  first hybrid after activation: ${fmt(firsts)}\n`,
    );
  } finally {
    await client.collections.delete(name).catch(() => undefined);
    await client.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
