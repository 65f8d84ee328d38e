/**
 * Faults on the embedded profile (PostgreSQL event store, projections reading the store,
 * embedded vector index), against a private PostgreSQL server this suite starts and restarts.
 * The product runs as a child process (`services/main.ts all`), so `kill -9` is real.
 * Needs nothing external: always runs. Prints one line per fault and writes test-output/faults.json.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type Pool } from 'pg';
import { onnxCore } from '../../infra/embeddings/onnx';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../infra/postgres/embedded';
import { createPool } from '../../infra/postgres/pool';
import { describeSkipped } from '../support/skip';
import {
  caughtUpByApi,
  expectClean,
  finishFault,
  freePort,
  moreAcks,
  OUT_DIR,
  productEnv,
  productProcess,
  provisionTenants,
  report,
  sleep,
  startLoad,
  terminateProductConnections,
  until,
  type FaultWindow,
  type Load,
  type ProductProcess,
  type Tenant,
} from './harness';

jest.setTimeout(240_000);

const root = mkdtempSync(join(tmpdir(), 'tr-faults-emb-'));
let pg: EmbeddedPostgres;
let pgPort: number;

const startPg = async () => {
  pg = await startEmbeddedPostgres({ dataDir: join(root, 'pg'), port: pgPort, durable: false, settings: { max_connections: '200' } });
};

beforeAll(async () => {
  pgPort = await freePort();
  await startPg();
});
afterAll(async () => {
  await pg?.stop().catch(() => undefined);
  // The server log stays with the product logs, for a failed run.
  await copyFile(join(root, 'pg', 'postmaster.log'), join(OUT_DIR, 'logs', 'embedded-postgres.log')).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

interface Deployment {
  base: string;
  db: Pool;
  dbName: string;
  product: ProductProcess;
  tenants: Tenant[];
  stop(): Promise<void>;
}

async function deploy(tag: string, extraEnv: Record<string, string> = {}): Promise<Deployment> {
  const dbName = `faults_${tag}_${Date.now().toString(36)}`;
  const admin = new Client({ connectionString: pg.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const url = pg.url.replace(/\/[^/]+$/, `/${dbName}`);
  const port = await freePort();
  const product = productProcess('all', ['all'], productEnv(join(root, `data-${tag}`), url, port, extraEnv), { port, logDir: join(OUT_DIR, 'logs', tag) });
  await product.start();
  const base = `http://127.0.0.1:${port}`;
  const tenants = await provisionTenants(base, 3, tag);
  const db = createPool(url, { max: 2, applicationName: 'fault-suite' });
  return {
    base,
    db,
    dbName,
    product,
    tenants,
    async stop() {
      await product.stop();
      await db.end();
    },
  };
}

const finish = (d: Deployment, load: Load, fault: string, window: FaultWindow, notes?: string) =>
  finishFault({ ...d, caughtUp: caughtUpByApi(d.base) }, load, { fault, profile: 'embedded', window, notes });

describe('fault suite, embedded profile (private PostgreSQL, product as child processes)', () => {
  it('PostgreSQL restarted under load: nothing acknowledged is lost or doubled, nothing stays pending', async () => {
    const d = await deploy('pgrestart');
    try {
      const load = startLoad(d.base, d.tenants, { tag: 'pgr' });
      await moreAcks(load, 10);
      const start = Date.now();
      await pg.stop();
      await sleep(1500);
      const lifted = Date.now();
      await startPg();
      const v = await finish(d, load, 'PostgreSQL restarted (embedded)', { start, lifted, end: Date.now() }, 'fast shutdown, 1.5 s down');
      expectClean(v);
    } finally {
      await d.stop();
    }
  });

  it('every product connection killed with pg_terminate_backend, three times: the product reconnects', async () => {
    const d = await deploy('pgterm');
    try {
      const load = startLoad(d.base, d.tenants, { tag: 'pgt' });
      await moreAcks(load, 10);
      const start = Date.now();
      const killed = await terminateProductConnections(d.db, d.dbName);
      const lifted = Date.now();
      const v = await finish(d, load, 'PostgreSQL connections killed (pg_terminate_backend x3)', { start, lifted, end: lifted }, `${killed} backends terminated`);
      expect(killed).toBeGreaterThan(0);
      expectClean(v);
    } finally {
      await d.stop();
    }
  });

  it('the process running projections and indexing workers killed with -9 while a document is being indexed', async () => {
    const d = await deploy('kill9');
    try {
      const load = startLoad(d.base, d.tenants, { tag: 'k9', bigEvery: 2 });
      await moreAcks(load, 6);
      // Mid-batch: an indexing job is running (its lease is held) when the process dies.
      const running = await until('an indexing job running', async () => Number((await d.db.query<{ n: string }>(`SELECT count(*) AS n FROM platform.index_jobs WHERE state = 'running'`)).rows[0]!.n) > 0, 60_000, 10);
      const start = Date.now();
      await d.product.kill9();
      await sleep(500);
      const lifted = Date.now();
      await d.product.start();
      const v = await finish(d, load, 'projector + indexer process killed -9 mid-batch (embedded)', { start, lifted, end: Date.now() }, running ? 'killed while an index job was running' : undefined);
      expectClean(v);
    } finally {
      await d.stop();
    }
  });
});

const modelDir = join(__dirname, '..', '..', 'models', 'all-minilm-l6-v2-q');
if (!onnxCore.modelFilesPresent(modelDir)) {
  describeSkipped('fault suite: embedder worker crash', `no ONNX model in ${modelDir} (npm run models:fetch); the hashing embedder has no worker thread`);
} else {
  describe('fault suite: embedder worker crash (ONNX model in worker threads)', () => {
    it('a worker thread crashing on one document: that document ends failed, the others are indexed, the pool replaces the worker', async () => {
      const poisonWord = 'zqpoisonpillx';
      const d = await deploy('embcrash', { EMBEDDER: 'auto', MODEL_DIR: modelDir, EMBED_WORKERS: '1', TENANT_RAG_FAULT_EMBED_CRASH_ON: poisonWord });
      try {
        const load = startLoad(d.base, d.tenants, { tag: 'ec', pauseMs: 100, poison: { tenant: 0, text: `# Poison\n\nThis document carries ${poisonWord} and crashes the embedder.` } });
        const start = Date.now();
        await moreAcks(load, 12, 120_000);
        const v = await finish(d, load, 'embedder worker thread crashing on one document', { start, lifted: start, end: start });
        const poison = load.acks.filter((a) => a.poison).map((a) => a.documentId);
        expect(poison).toHaveLength(1);
        expectClean(v, poison);
      } finally {
        await d.stop();
      }
    });
  });
}
