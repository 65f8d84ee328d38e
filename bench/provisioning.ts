/**
 * Tenant provisioning over the public API: POST /v1/tenants as the operator, one at a time, N
 * tenants (1,000; --quick 100). The response comes once the tenant's schema exists (the route
 * waits for the platform and catalog projections), so the latency is "usable tenant". The same
 * tenants are the "other tenants" of the noisy-neighbour search figure.
 *
 * "Without degradation": the p50 of the last tenth of the tenants is within 20% of the p50 of
 * the first tenth.
 */
import { type BenchTenant, type HttpClient, provisionTenant } from './harness';
import type { Bench } from './harness';
import { all, type Figure, fmtInt, fmtNum, latencyWithin, median, summariseLatency } from './stats';

export async function provisionMany(b: Bench, http: HttpClient, n: number): Promise<{ tenants: BenchTenant[]; seconds: number }> {
  const tenants: BenchTenant[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    tenants.push(await provisionTenant(http, 'other', { login: false }));
    if ((i + 1) % 100 === 0) b.log(`provisioning: ${i + 1}/${n}`);
  }
  return { tenants, seconds: (performance.now() - t0) / 1000 };
}

export function provisioningFigure(b: Bench, tenants: BenchTenant[], seconds: number): Figure {
  const quick = b.opts.quick;
  const lat = tenants.map((t) => t.provisionMs);
  const RUNS = 5;
  const size = Math.ceil(lat.length / RUNS);
  const runs = Array.from({ length: RUNS }, (_, r) => lat.slice(r * size, (r + 1) * size)).filter((r) => r.length);
  const s = summariseLatency(runs);
  const tenth = Math.max(1, Math.floor(lat.length / 10));
  const first = median(lat.slice(0, tenth));
  const last = median(lat.slice(-tenth));
  const degradation = last / first;
  return {
    id: 'provisioning',
    group: 'tenants',
    label: 'tenant provisioning (POST /v1/tenants, sequential)',
    scale: `${fmtInt(tenants.length)} tenants${quick ? ' (--quick; full: 1,000)' : ''}`,
    summary: s,
    target: 'p50 <= 100 ms; last tenth p50 <= 1.2 x first tenth',
    verdict: all(latencyWithin(s, { p50: 100 }), degradation <= 1.2 ? 'PASS' : 'MISS'),
    compare: `last/first tenth p50: ${fmtNum(first)} -> ${fmtNum(last)} ms (${fmtNum(degradation, 2)} x)`,
    notes: [
      `${fmtInt(tenants.length)} tenants in ${fmtNum(seconds)} s; "runs" are consecutive fifths of the sequence. Each request hashes the owner's password (argon2id), appends the tenant's events and waits until its schema and role exist.`,
    ],
    raw: lat,
  };
}
