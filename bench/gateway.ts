/**
 * Gateway throughput: authenticated GET /v1/documents (JWT of the tenant's owner, first page of
 * 20 documents) from 32 keep-alive connections for a fixed time, repeated. A bounded closed-loop
 * client on node:http (no extra dependency): 32 loops, each sending its next request when the
 * previous answer arrived; it runs in the bench process, the product in its own process.
 */
import http from 'node:http';
import type { Bench, BenchTenant } from './harness';
import { all, atLeast, type Figure, fmtInt, fmtNum, latencyWithin, summariseLatency, summariseRate } from './stats';

export interface LoadRun {
  rps: number;
  latencies: number[];
  statuses: Record<string, number>;
}

/** One GET on `agent`, its latency and status (or `error`) recorded; resolves with the status (0 on error). */
export function timedGet(agent: http.Agent, url: URL, path: string, token: string, into: { latencies: number[]; statuses: Record<string, number> }): Promise<number> {
  return new Promise<number>((resolve) => {
    const started = performance.now();
    const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
    const req = http.request({ host: url.hostname, port: url.port, path, method: 'GET', headers, agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => {
        into.latencies.push(performance.now() - started);
        const k = String(res.statusCode);
        into.statuses[k] = (into.statuses[k] ?? 0) + 1;
        resolve(res.statusCode ?? 0);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      into.statuses.error = (into.statuses.error ?? 0) + 1;
      resolve(0);
    });
    req.end();
  });
}

export async function closedLoop(baseUrl: string, token: string, path: string, connections: number, durationMs: number, maxRequests: number): Promise<LoadRun> {
  const url = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let sent = 0;
  let ok = 0;
  const once = async () => {
    if ((await timedGet(agent, url, path, token, { latencies, statuses })) === 200) ok++;
  };
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline && sent < maxRequests) {
        sent++;
        await once();
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return { rps: ok / seconds, latencies, statuses };
}

export async function gatewayBench(b: Bench, baseUrl: string, tenant: BenchTenant, documents: number): Promise<Figure> {
  const quick = b.opts.quick;
  const RUNS = quick ? 3 : 5;
  const DURATION = quick ? 1500 : 8000;
  const CONNECTIONS = 32;
  b.log(`gateway: GET /v1/documents, ${CONNECTIONS} connections, ${RUNS} x ${DURATION / 1000} s`);
  await closedLoop(baseUrl, tenant.token, '/v1/documents', CONNECTIONS, 500, 100_000); // warm-up
  const runs: LoadRun[] = [];
  for (let r = 0; r < RUNS; r++) runs.push(await closedLoop(baseUrl, tenant.token, '/v1/documents', CONNECTIONS, DURATION, 1_000_000));
  const rate = summariseRate(runs.map((r) => r.rps), 'req/s');
  const lat = summariseLatency(runs.map((r) => r.latencies));
  const statuses: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const non200 = Object.entries(statuses).filter(([k]) => k !== '200');
  return {
    id: 'gateway',
    group: 'gateway',
    label: `gateway: authenticated GET /v1/documents, ${CONNECTIONS} connections`,
    scale: `${RUNS} runs x ${DURATION / 1000} s, page of ${Math.min(20, documents)} documents${quick ? ' (--quick)' : ''}`,
    summary: rate,
    target: '>= 2,000 req/s, p99 <= 50 ms',
    verdict: all(atLeast(rate, 2000), latencyWithin(lat, { p99: 50 })),
    compare: `latency p50 ${fmtNum(lat.median)} / p99 ${fmtNum(lat.p99)} ms`,
    notes: [
      `${fmtInt(lat.samples)} requests; ${non200.length ? `non-200 answers: ${non200.map(([k, v]) => `${k} x ${v}`).join(', ')}` : 'all 200'}. The closed-loop client (same 2 cores) competes with the product and PostgreSQL for CPU.`,
    ],
    raw: { rps: runs.map((r) => r.rps), p99: lat.p99, statuses },
  };
}
