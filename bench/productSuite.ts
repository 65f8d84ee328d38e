/**
 * The figures measured against the running product (a child process on its own scratch
 * database, embedded profile, offline hashing embedder), in an order that builds on itself:
 * provisioning (the other tenants) -> freshness -> gateway -> search (+ memory, ask, noisy
 * neighbours, Weaviate peer) -> ingest -> freshness on the production profile (Kafka), when
 * KAFKA_BROKERS is set and the product wires it.
 */
import { Kafka, logLevel } from 'kafkajs';
import weaviate from 'weaviate-client';
import { createPool } from '../infra/postgres/pool';
import { freshnessFigure, measureFreshness } from './freshness';
import { gatewayBench } from './gateway';
import { type Bench, type BenchTenant, HttpClient, provisionTenant, startProductProcess } from './harness';
import { ingestBench } from './ingest';
import { provisionMany, provisioningFigure } from './provisioning';
import { searchBench } from './search';
import { failed, type Figure, skipped } from './stats';

type ProductGroup = 'provisioning' | 'freshness' | 'gateway' | 'search' | 'ingest';

export async function productBenches(b: Bench, groups: Set<ProductGroup>, sink: (f: Figure[]) => void): Promise<void> {
  const quick = b.opts.quick;
  const uploads = quick ? { runs: 3, per: 10 } : { runs: 5, per: 40 };
  const url = await b.createDatabase('bench_product');
  b.log('product: starting (child process, embedded profile, hashing embedder)');
  const product = await startProductProcess(b, url);
  const http = new HttpClient(product.baseUrl, 8);
  const pool = createPool(url, { max: 4, applicationName: 'bench loader' });
  const guard = async (label: string, fn: () => Promise<Figure[]>) => {
    try {
      sink(await fn());
    } catch (err) {
      b.log(`${label} failed: ${(err as Error).stack ?? String(err)}`);
      sink([failed({ id: label, group: label, label, scale: '', target: '' }, err)]);
    }
  };
  try {
    const bus = (product.ready.bus as { adapter?: string } | undefined)?.adapter ?? '?';
    b.log(`product: ${product.baseUrl}, pid ${product.pid}, embedder ${product.embedderId}, bus ${bus}`);

    // ---- provisioning (and the other tenants of the search figures) ---------------------------
    let others: BenchTenant[] = [];
    if (groups.has('provisioning') || groups.has('search')) {
      const n = quick ? 100 : 1000;
      b.log(`provisioning: ${n} tenants`);
      const r = await provisionMany(b, http, n);
      others = r.tenants;
      if (groups.has('provisioning')) sink([provisioningFigure(b, others, r.seconds)]);
    }

    // ---- freshness (embedded profile) --------------------------------------------------------
    const fresh = await provisionTenant(http, 'fresh');
    if (groups.has('freshness') || groups.has('gateway')) {
      await guard('freshness', async () => {
        b.log(`freshness: ${uploads.runs} x ${uploads.per} uploads`);
        const f = await measureFreshness(http, fresh, uploads.runs, uploads.per, 'e');
        return groups.has('freshness') ? [freshnessFigure(b, f, 'embedded profile', { p50: 25, p99: 100 }, 'p50 <= 25 ms, p99 <= 100 ms')] : [];
      });
    }

    // ---- gateway -------------------------------------------------------------------------------
    if (groups.has('gateway')) await guard('gateway', async () => [await gatewayBench(b, product.baseUrl, fresh, uploads.runs * uploads.per)]);

    // ---- search ---------------------------------------------------------------------------------
    if (groups.has('search')) {
      await guard('search', async () => {
        const big = await provisionTenant(http, 'big');
        const peer = process.env.WEAVIATE_URL ? await provisionTenant(http, 'peer', { login: false }) : null;
        return searchBench({ b, product, http, pool, big, others, peer });
      });
    }

    // ---- ingest ---------------------------------------------------------------------------------
    if (groups.has('ingest')) await guard('ingest', () => ingestBench(b, http));
  } finally {
    http.close();
    await pool.end();
    await product.stop();
  }

  // ---- freshness, production profile (Kafka) --------------------------------------------------
  if (groups.has('freshness')) {
    const base = { id: 'freshness.kafka', group: 'freshness', label: 'freshness: upload accepted (202) -> visible to search, production profile (Kafka)', scale: '', target: 'p99 <= 250 ms' };
    const brokers = process.env.KAFKA_BROKERS;
    if (!brokers) {
      sink([skipped({ ...base, reason: 'skipped: KAFKA_BROKERS is not set (production profile: `set -a; source .env.infra; set +a`).' })]);
      return;
    }
    if (!brokers.split(',').every((h) => /^(127\.0\.0\.1|localhost):\d+$/.test(h.trim()))) {
      sink([skipped({ ...base, reason: `skipped: KAFKA_BROKERS=${brokers} is not on 127.0.0.1` })]);
      return;
    }
    await guard('freshness.kafka', async () => {
      // Its own Kafka namespace (topics and consumer groups) and Weaviate collection: the cluster
      // and the server may be shared with other runs, whose events must never reach this product.
      const namespace = `bench${process.pid}`;
      const env: Record<string, string> = { KAFKA_BROKERS: brokers, KAFKA_NAMESPACE: namespace, KAFKAJS_NO_PARTITIONER_WARNING: '1' };
      const parts = ['Kafka'];
      const weaviateUrl = process.env.WEAVIATE_URL;
      if (weaviateUrl && /^http:\/\/(127\.0\.0\.1|localhost)[:/]/.test(weaviateUrl)) {
        Object.assign(env, { WEAVIATE_URL: weaviateUrl, WEAVIATE_GRPC_PORT: process.env.WEAVIATE_GRPC_PORT ?? '50051', WEAVIATE_COLLECTION: `BenchFresh${process.pid}` });
        parts.push('Weaviate');
      }
      if (process.env.REDIS_URL && /^redis:\/\/(127\.0\.0\.1|localhost)[:/]/.test(process.env.REDIS_URL)) {
        env.REDIS_URL = process.env.REDIS_URL;
        parts.push('Redis');
      }
      const kafkaUrl = await b.createDatabase('bench_product_kafka');
      const p = await startProductProcess(b, kafkaUrl, env);
      const client = new HttpClient(p.baseUrl, 4);
      try {
        const bus = (p.ready.bus as { adapter?: string } | undefined)?.adapter ?? '';
        if (!/kafka/i.test(bus)) {
          return [skipped({ ...base, reason: `skipped: the product started with KAFKA_BROKERS=${brokers} reports bus = "${bus}" on /ready, not Kafka.` })];
        }
        const t = await provisionTenant(client, 'freshk');
        const f = await measureFreshness(client, t, uploads.runs, uploads.per, 'k');
        const fig = freshnessFigure(b, f, `production profile (${parts.join(' + ')})`, { p99: 250 }, 'p99 <= 250 ms', 'freshness.kafka');
        fig.notes.push(`Own Kafka namespace "${namespace}" (topics and consumer groups removed afterwards)${parts.includes('Weaviate') ? ` and Weaviate collection BenchFresh${process.pid}` : ''}.`);
        return [fig];
      } finally {
        client.close();
        await p.stop();
        await cleanupProductionProfile(brokers, namespace, env).catch((err) => b.log(`cleanup of the production profile failed: ${(err as Error).message}`));
      }
    });
  }
}

/** Removes the bench's Kafka topics and consumer groups, and its Weaviate collection. */
async function cleanupProductionProfile(brokers: string, namespace: string, env: Record<string, string>): Promise<void> {
  const kafka = new Kafka({ clientId: 'tenant-rag-bench-cleanup', brokers: brokers.split(',').map((x) => x.trim()), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`tenant-rag.${namespace}.`));
    if (topics.length) await admin.deleteTopics({ topics, timeout: 10_000 });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(`${namespace}.`));
    if (groups.length) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
  if (env.WEAVIATE_URL && env.WEAVIATE_COLLECTION) {
    const u = new URL(env.WEAVIATE_URL);
    const client = await weaviate.connectToLocal({ host: u.hostname, port: Number(u.port || 80), grpcPort: Number(env.WEAVIATE_GRPC_PORT) });
    await client.collections.delete(env.WEAVIATE_COLLECTION).catch(() => undefined);
    await client.close();
  }
}
