/**
 * Faults on the production profile: PostgreSQL 15 event store, Kafka relay and consumer groups,
 * Weaviate, Redis, all PRIVATE to this suite (infra/scripts with their own INFRA_DIR and port
 * offset: the shared servers of .env.infra are never restarted). The product runs split as real
 * processes: gateway, relay (two in the race), projector (every projection and the indexing
 * workers). Skipped by name where the server binaries are not installed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type Pool } from 'pg';
import { parseStreamId } from '../../contracts/naming';
import { encodePosition } from '../../infra/eventstore/postgres';
import { createPool } from '../../infra/postgres/pool';
import { describeSkipped } from '../support/skip';
import {
  expectClean,
  finishFault,
  freePort,
  moreAcks,
  OUT_DIR,
  productEnv,
  productProcess,
  provisionTenants,
  sleep,
  startLoad,
  terminateProductConnections,
  storeHead,
  until,
  type FaultWindow,
  type Load,
  type ProductProcess,
  type Tenant,
} from './harness';
import { privateServersUnavailable, type PrivateServers, type Service, startPrivateServers } from './servers';

/**
 * Kafka projections keep one checkpoint per (category, tenant): each must have reached the last
 * event of its (category, tenant) in the store, for every category the projection consumes, and
 * the relay's checkpoint the store's head.
 */
function caughtUpByCheckpoints(db: Pool): (head: string) => Promise<string[]> {
  return async (head) => {
    const events = await db.query<{ stream_id: string; xid: string; gp: string }>('SELECT stream_id, transaction_id::text AS xid, global_position::text AS gp FROM es.events');
    const last = new Map<string, string>();
    for (const e of events.rows) {
      const s = parseStreamId(e.stream_id);
      const key = `${s.category}/${s.tenantId ?? 'none'}`;
      const p = encodePosition(e.xid, e.gp);
      if ((last.get(key) ?? '') < p) last.set(key, p);
    }
    const cps = new Map((await db.query<{ projection: string; position: string }>('SELECT projection, position FROM platform.checkpoints')).rows.map((r) => [r.projection, r.position]));
    const behind: string[] = [];
    if ((cps.get('relay.kafka') ?? '') < head) behind.push(`relay at ${cps.get('relay.kafka') ?? 0} < ${head}`);
    const consumed = new Map<string, Set<string>>();
    for (const name of cps.keys()) {
      const [base, category] = name.split('/');
      if (!base || !category) continue;
      consumed.set(base, (consumed.get(base) ?? new Set()).add(category));
    }
    for (const [base, categories] of consumed) {
      for (const [key, p] of last) {
        if (!categories.has(key.split('/')[0]!)) continue;
        const cp = cps.get(`${base}/${key}`) ?? '';
        if (cp < p) behind.push(`${base}/${key} at ${cp || 0} < ${p}`);
      }
    }
    return behind;
  };
}

/** Resolves when the relay's checkpoint has passed the store head as it is now (the relay publishes again). */
async function relayPasses(db: Pool): Promise<number> {
  const head = await storeHead(db);
  await until('relay publishes again', async () => ((await db.query<{ position: string }>(`SELECT position FROM platform.checkpoints WHERE projection = 'relay.kafka'`)).rows[0]?.position ?? '') >= head, 120_000, 100);
  return Date.now();
}

const unavailable = privateServersUnavailable();
if (unavailable) {
  describeSkipped('fault suite, production profile (private PostgreSQL, Kafka, Weaviate, Redis)', unavailable);
} else {
  describe('fault suite, production profile (private PostgreSQL, Kafka, Weaviate, Redis; product split in processes)', () => {
    jest.setTimeout(300_000);
    const root = mkdtempSync(join(tmpdir(), 'tr-faults-prod-'));
    let servers: PrivateServers;
    let db: Pool;
    let dbName: string;
    let base: string;
    let gateway: ProductProcess;
    let relay: ProductProcess;
    let relay2: ProductProcess;
    let projector: ProductProcess;
    let round = 0;

    beforeAll(async () => {
      servers = await startPrivateServers();
      dbName = `faults_prod_${Date.now().toString(36)}`;
      const admin = new Client({ connectionString: servers.env.DATABASE_URL });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${dbName}`);
      await admin.end();
      const url = servers.env.DATABASE_URL.replace(/\/[^/]+$/, `/${dbName}`);
      const port = await freePort();
      const ns = `f${Date.now().toString(36)}`;
      const env = productEnv(join(root, 'data'), url, port, {
        KAFKA_BROKERS: servers.env.KAFKA_BROKERS,
        KAFKA_NAMESPACE: ns,
        WEAVIATE_URL: servers.env.WEAVIATE_URL,
        WEAVIATE_GRPC_PORT: servers.env.WEAVIATE_GRPC_PORT,
        WEAVIATE_COLLECTION: `Chunk${ns}`,
        REDIS_URL: servers.env.REDIS_URL,
      });
      const logDir = join(OUT_DIR, 'logs', 'production');
      gateway = productProcess('gateway', ['gateway'], env, { port, logDir });
      projector = productProcess('projector', ['projector', 'all'], env, { logDir });
      relay = productProcess('relay', ['relay'], env, { logDir });
      relay2 = productProcess('relay2', ['relay'], env, { logDir });
      base = `http://127.0.0.1:${port}`;
      // The gateway migrates the database first; the others then start on a migrated schema.
      await gateway.start();
      await projector.start();
      await relay.start();
      db = createPool(url, { max: 2, applicationName: 'fault-suite' });
    });

    afterAll(async () => {
      for (const p of [relay2, relay, projector, gateway]) await p?.stop().catch(() => undefined);
      await db?.end().catch(() => undefined);
      await servers?.destroy();
      rmSync(root, { recursive: true, force: true });
    });

    /** Fresh tenants and load for one fault; processes a previous fault left dead are started again. */
    async function begin(tag: string, opts: { bigEvery?: number } = {}): Promise<{ tenants: Tenant[]; load: Load }> {
      for (const p of [gateway, projector, relay]) if (!p.alive()) await p.start();
      const tenants = await provisionTenants(base, 3, `${tag}${++round}`);
      const load = startLoad(base, tenants, { tag, ...opts });
      await moreAcks(load, 10);
      return { tenants, load };
    }

    const finish = (tenants: Tenant[], load: Load, fault: string, window: FaultWindow, notes?: string, recoveredAt?: Promise<number>) =>
      finishFault({ base, db, tenants, caughtUp: caughtUpByCheckpoints(db) }, load, { fault, profile: 'production', window, notes, recoveredAt });

    /** Stops a private server, keeps it down `downMs`, starts it again. */
    async function restart(service: Service, downMs: number): Promise<FaultWindow> {
      const start = Date.now();
      await servers.stop(service);
      await sleep(downMs);
      const lifted = Date.now();
      await servers.start(service);
      return { start, lifted, end: Date.now() };
    }

    it('PostgreSQL restarted under load', async () => {
      const { tenants, load } = await begin('pg');
      const w = await restart('postgres', 1500);
      expectClean(await finish(tenants, load, 'PostgreSQL restarted (production)', w, 'fast shutdown, 1.5 s down'));
    });

    it('every product connection killed with pg_terminate_backend, three times', async () => {
      const { tenants, load } = await begin('pgt');
      const start = Date.now();
      const killed = await terminateProductConnections(db, dbName);
      const lifted = Date.now();
      expect(killed).toBeGreaterThan(0);
      expectClean(await finish(tenants, load, 'PostgreSQL connections killed (pg_terminate_backend x3, production)', { start, lifted, end: lifted }, `${killed} backends terminated (gateway, relay lock session, projector)`));
    });

    it('relay killed with -9 mid-batch and started again', async () => {
      const { tenants, load } = await begin('rl');
      const start = Date.now();
      await relay.kill9();
      const recovered = relayPasses(db);
      await sleep(1000);
      const lifted = Date.now();
      await relay.start();
      expectClean(await finish(tenants, load, 'relay killed -9 mid-batch and restarted', { start, lifted, end: Date.now() }, 'recover: until the restarted relay published past the head at the kill', recovered));
    });

    it('two relays racing for the lock, the active one killed with -9 in turn', async () => {
      await relay2.start();
      const { tenants, load } = await begin('r2');
      // Whichever holds the lock, one of the two kills hits the active relay; the other takes over.
      const start = Date.now();
      await relay.kill9();
      const first = relayPasses(db);
      await moreAcks(load, 4);
      await first;
      await relay.start();
      await relay2.kill9();
      const second = relayPasses(db);
      const lifted = Date.now();
      await moreAcks(load, 4);
      await relay2.start();
      const v = await finish(tenants, load, 'two relays racing for the lock (each killed -9 once)', { start, lifted, end: Date.now() }, 'recover: until the standby published past the head at the first kill', first);
      await second;
      await relay2.stop();
      expectClean(v);
    });

    it('projector (every projection and the indexing workers) killed with -9 mid-batch', async () => {
      const { tenants, load } = await begin('pk', { bigEvery: 2 });
      const start = Date.now();
      await projector.kill9();
      await sleep(500);
      const lifted = Date.now();
      await projector.start();
      expectClean(await finish(tenants, load, 'projector + indexer process killed -9 (production)', { start, lifted, end: Date.now() }));
    });

    it('Kafka broker restarted', async () => {
      const { tenants, load } = await begin('kf');
      const w = await restart('kafka', 2000);
      expectClean(await finish(tenants, load, 'Kafka broker restarted', w, 'SIGTERM, 2 s down'));
    });

    it('Redis restarted: rate limits fall back to per-process buckets, no 5xx', async () => {
      const { tenants, load } = await begin('rd');
      const w = await restart('redis', 1500);
      const v = await finish(tenants, load, 'Redis restarted', w, 'no persistence: buckets and idempotency records start empty');
      expectClean(v);
      const fiveHundreds = Object.entries(load.statuses).filter(([k]) => / 5\d\d$/.test(k)).reduce((n, [, c]) => n + c, 0);
      expect(fiveHundreds).toBe(0);
    });

    it('Weaviate restarted', async () => {
      const { tenants, load } = await begin('wv');
      const w = await restart('weaviate', 1500);
      expectClean(await finish(tenants, load, 'Weaviate restarted', w, 'SIGTERM, 1.5 s down'));
    });
  });
}
