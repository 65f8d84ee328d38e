/**
 * `npm run bench` (tsx bench/run.ts): measures the product on this machine and prints every
 * figure as median and p99 over repeated runs, next to its target and, where one exists, a peer
 * or the physical limit measured in the same run. Results also go to bench/results/<date>.json.
 *
 *   npm run bench                      full scale (several minutes)
 *   npm run bench -- --quick           scaled-down counts (under 3 minutes on 2 cores); the
 *                                      table says what was scaled
 *   npm run bench -- --only eventstore,search
 *   npm run bench -- --cpu-prof        V8 CPU profiles of the product process (bench/results/cpuprofile-*)
 *
 * Groups: eventstore, rebuild, relay, provisioning, freshness, gateway, search, ingest, embedding,
 * index, tenants (the embedded index at scale: one large tenant, many small ones; bench/indexScale.ts).
 * Never part of `npm test`. All load is bounded in count and time and targets 127.0.0.1 only;
 * PostgreSQL is a dedicated embedded server in a temp dir (or DATABASE_URL, which must be local
 * and allow CREATE DATABASE); the product runs as a child process with the offline embedder.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { embeddingBench } from './embedding';
import { eventStoreBench } from './eventStore';
import { type Bench, cpuProbe, log, startBench } from './harness';
import { indexBench } from './indexScale';
import { productBenches } from './productSuite';
import { rebuildBench } from './rebuild';
import { relayBench } from './relay';
import { type Figure, renderTable } from './stats';

export const GROUPS = ['eventstore', 'rebuild', 'relay', 'provisioning', 'freshness', 'gateway', 'search', 'ingest', 'embedding', 'index', 'tenants'] as const;
export type Group = (typeof GROUPS)[number];

const USAGE = `usage: npm run bench -- [--quick] [--only ${GROUPS.join(',')}] [--cpu-prof] [--out DIR]`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      out: { type: 'string', default: join(__dirname, 'results') },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const only = new Set<Group>((values.only ? values.only.split(',') : GROUPS).map((g) => g.trim() as Group));
  for (const g of only) if (!GROUPS.includes(g)) throw new Error(`unknown group ${g}; ${USAGE}`);
  const quick = values.quick!;
  const outDir = resolve(values.out!);
  const cpuProfDir = values['cpu-prof'] ? join(outDir, `cpuprofile-${stamp()}`) : null;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });

  const startedAt = new Date();
  const t0 = performance.now();
  const loadAtStart = loadavg()[0]!;
  const probeAtStart = cpuProbe();
  // Hard bound on the whole run: print what was measured and stop.
  // The index groups at full scale write 100,000 chunks into Weaviate (~10 min at its insert rate
  // here) and provision 10,000 tenants: they get time of their own.
  const hardLimitMs = ((quick ? 6 : 45) + (only.has('index') ? (quick ? 4 : 30) : 0) + (only.has('tenants') ? (quick ? 3 : 30) : 0)) * 60_000;
  const figures: Figure[] = [];
  let bench: Bench | null = null;
  let finished = false;
  const finish = async (why: string | null) => {
    if (finished) return;
    finished = true;
    const seconds = (performance.now() - t0) / 1000;
    const probeAtEnd = cpuProbe();
    const header = [
      '',
      `tenant-rag benchmarks ${quick ? '--quick (scaled down: see "scale")' : '(full scale)'} - ${startedAt.toISOString()} - ${seconds.toFixed(0)} s`,
      `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.versions.node}; server: ${bench?.serverLabel ?? '?'}`,
      'median/p99: latency = pooled samples of all runs; rates = median run / rate 99% of runs reach (the worst run).',
      'Client, product and PostgreSQL share the same cores: every figure includes the load generator\'s CPU.',
      `1-min load average: ${loadAtStart.toFixed(1)} at start, ${loadavg()[0]!.toFixed(1)} at the end${loadAtStart > cpus().length ? ' (the machine was busy with other work: figures are pessimistic)' : ''}; CPU probe (10,000 x 384 dot products, one thread, best of 7): ${probeAtStart.toFixed(1)} ms at start, ${probeAtEnd.toFixed(1)} ms at the end.`,
      ...(why ? [`INCOMPLETE: ${why}`] : []),
      '',
    ];
    const table = renderTable(figures, header);
    process.stdout.write(`${table}\n`);
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `${stamp(startedAt)}${quick ? '-quick' : ''}.json`);
    writeFileSync(
      file,
      `${JSON.stringify(
        {
          startedAt: startedAt.toISOString(),
          seconds,
          quick,
          groups: [...only],
          incomplete: why,
          machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: totalmem() / 2 ** 30, node: process.versions.node, loadAverage: { start: loadAtStart, end: loadavg()[0] }, cpuProbeMs: { start: probeAtStart, end: probeAtEnd } },
          server: bench?.serverLabel,
          figures,
        },
        (_k, v) => (typeof v === 'bigint' ? v.toString() : v),
        2,
      )}\n`,
    );
    process.stdout.write(`\nresults: ${file}${cpuProfDir ? `\nCPU profiles: ${cpuProfDir}` : ''}\n`);
  };
  const hard = setTimeout(() => {
    void finish(`hard time limit of ${hardLimitMs / 60_000} min reached`).finally(() => process.exit(2));
  }, hardLimitMs);
  hard.unref();
  const onSignal = (sig: string) => {
    void finish(`interrupted (${sig})`)
      .then(() => bench?.close())
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));

  // --quick aims at 3 minutes: the last repeatable module (ingest) stops repeating near this.
  bench = await startBench({ quick, cpuProfDir, deadline: quick ? t0 + 155_000 : null });
  try {
    log(`server: ${bench.serverLabel}`);
    if (only.has('eventstore')) figures.push(...(await eventStoreBench(bench)));
    if (only.has('rebuild')) figures.push(...(await rebuildBench(bench)));
    if (only.has('relay')) figures.push(...(await relayBench(bench)));
    const productGroups = (['provisioning', 'freshness', 'gateway', 'search', 'ingest'] as const).filter((g) => only.has(g));
    if (productGroups.length) await productBenches(bench, new Set(productGroups), (f) => figures.push(...f));
    if (only.has('embedding')) figures.push(...(await embeddingBench(bench)));
    if (only.has('index') || only.has('tenants')) await indexBench(bench, { big: only.has('index'), many: only.has('tenants') }, (f) => figures.push(...f));
  } finally {
    clearTimeout(hard);
    await finish(null);
    await bench.close().catch((err) => log(`cleanup failed: ${(err as Error).message}`));
  }
}

function stamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

// A scratch database dropped under a peer's idle connection ends it with 57P01; that is cleanup.
process.on('uncaughtException', (err) => {
  if ((err as { code?: string }).code === '57P01') return;
  process.stderr.write(`bench failed: ${err.stack ?? String(err)}\n`);
  process.exit(1);
});

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
