import { startBench, startProductProcess, HttpClient, provisionTenant } from './harness';
import { closedLoop } from './gateway';
import { pct } from './stats';
(async () => {
  const b = await startBench({ quick: true, cpuProfDir: '/tmp/trprof' });
  try {
    const url = await b.createDatabase('bench_product');
    const p = await startProductProcess(b, url);
    const http = new HttpClient(p.baseUrl, 4);
    const t = await provisionTenant(http, 'gw');
    for (let i = 0; i < 20; i++) await http.expect(202, 'POST', '/v1/documents', { token: t.token, json: { filename: `d${i}.md`, text: 'hello world ' + i } });
    for (const c of [1, 4, 32]) {
      const r = await closedLoop(p.baseUrl, t.token, '/v1/documents', c, 3000, 1e6);
      console.log(`conn ${c}: ${r.rps.toFixed(0)} rps p50 ${pct(r.latencies, 50).toFixed(1)} p99 ${pct(r.latencies, 99).toFixed(1)}`, r.statuses);
    }
    const r = await closedLoop(p.baseUrl, '', '/health', 32, 2000, 1e6);
    console.log(`health 32: ${r.rps.toFixed(0)} rps p50 ${pct(r.latencies, 50).toFixed(1)}`);
    http.close(); await p.stop();
  } finally { await b.close(); }
})().catch((e) => { console.error(e); process.exit(1); });
