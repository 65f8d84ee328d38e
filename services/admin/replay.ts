/**
 * npm run replay -- <projection> [--url http://127.0.0.1:3000]      (audit, analytics, catalog; platform in place)
 * npm run replay -- <projection> --tenant <slug>      (only that tenant's rows, swapped in place; platform too)
 * npm run replay -- catalog --tenant <slug> --until <ISO time | position> --into <name>
 *
 * Asks the running product to rebuild a read model from position 0 of the event store into a new
 * version beside the live one (POST /v1/admin/projections/{name}/rebuild) and draws its progress
 * until reads have switched. Needs ADMIN_TOKEN in the environment. Going through the product
 * (not the database) keeps one code path for both profiles and lets the live process switch.
 */
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
  const name = process.argv[2];
  const base = (arg('--url') ?? process.env.TENANT_RAG_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}`).replace(/\/$/, '');
  const token = process.env.ADMIN_TOKEN;
  if (!name || name.startsWith('--')) {
    process.stderr.write('usage: npm run replay -- <projection> [--tenant <slug>] [--url http://127.0.0.1:3000]\n');
    return 64;
  }
  if (!token) {
    process.stderr.write('ADMIN_TOKEN must be set to the operator token of the running product\n');
    return 64;
  }
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const tenant = arg('--tenant');
  if (arg('--until') !== undefined || arg('--into') !== undefined) {
    const until = arg('--until');
    const into = arg('--into');
    if (!tenant || !until || !into) {
      process.stderr.write('a point-in-time copy needs --tenant <slug> --until <ISO time | position> --into <name>\n');
      return 64;
    }
    return snapshot(base, headers, tenant, until, into);
  }
  if (tenant !== undefined && (!tenant || tenant.startsWith('--'))) {
    process.stderr.write('--tenant needs a tenant slug\n');
    return 64;
  }
  const start = await fetch(`${base}/v1/admin/projections/${encodeURIComponent(name)}/rebuild`, {
    method: 'POST',
    headers,
    body: JSON.stringify(tenant === undefined ? {} : { tenant }),
  });
  const body = (await start.json()) as { detail?: string; version?: number };
  if (start.status !== 202) {
    process.stderr.write(`rebuild refused (${start.status}): ${body.detail ?? JSON.stringify(body)}\n`);
    return 1;
  }
  const tty = process.stdout.isTTY;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const res = await fetch(`${base}/v1/admin/projections`, { headers });
    const list = (await res.json()) as { items: { name: string; rebuild: { done: number; total: number | null; eventsPerSecond: number; etaSeconds: number | null; state: string; error: string | null; version: number; tenant?: string; inPlace?: boolean } | null }[] };
    const r = list.items.find((p) => p.name === name)?.rebuild;
    if (!r || r.tenant !== tenant) continue;
    const what = tenant === undefined ? name : `${name} (tenant ${tenant})`;
    const width = 30;
    const frac = r.total ? Math.min(1, r.done / r.total) : 0;
    const bar = r.total ? `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ${(frac * 100).toFixed(0).padStart(3)}%` : '[ ... ]';
    const line = `${what} v${r.version} ${bar} ${r.done}${r.total ? `/${r.total}` : ''} events  ${r.eventsPerSecond} ev/s  ETA ${r.etaSeconds ?? '?'} s`;
    process.stdout.write(tty ? `\r${line}` : `${line}\n`);
    if (r.state === 'switched') {
      const whole = r.inPlace ? `${name}: rebuilt in place from the event store (version ${r.version}); reads switched.` : `${name}: rebuilt as version ${r.version}; reads switched.`;
      process.stdout.write(tenant === undefined ? `\n${whole}\n` : `\n${what}: rebuilt from the event store; its rows switched in version ${r.version}.\n`);
      return 0;
    }
    if (r.state === 'failed') {
      process.stdout.write(`\n${what}: rebuild failed: ${r.error}\n`);
      return 1;
    }
  }
}

/** Builds a read-only copy of one tenant's knowledge base as it was at `until`, searchable with as_of. */
async function snapshot(base: string, headers: Record<string, string>, tenant: string, until: string, name: string): Promise<number> {
  const res = await fetch(`${base}/v1/admin/snapshots`, { method: 'POST', headers, body: JSON.stringify({ tenant, until, name }) });
  const body = (await res.json()) as { detail?: string; documents?: number };
  if (res.status !== 202) {
    process.stderr.write(`snapshot refused (${res.status}): ${body.detail ?? JSON.stringify(body)}\n`);
    return 1;
  }
  const started = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const list = (await (await fetch(`${base}/v1/admin/snapshots?tenant=${encodeURIComponent(tenant)}`, { headers })).json()) as { items: { name: string; documents: number; indexed: number; state: string }[] };
    const s = list.items.find((i) => i.name === name);
    if (!s) continue;
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? s.indexed / secs : 0;
    const frac = s.documents ? s.indexed / s.documents : 1;
    const line = `snapshot ${name} [${'#'.repeat(Math.round(frac * 30)).padEnd(30, '.')}] ${s.indexed}/${s.documents} documents  ${rate.toFixed(1)} docs/s  ETA ${rate > 0 ? Math.round((s.documents - s.indexed) / rate) : '?'} s`;
    process.stdout.write(process.stdout.isTTY ? `\r${line}` : `${line}\n`);
    if (s.state === 'ready') {
      process.stdout.write(`\nsnapshot ${name} of ${tenant} as of ${until} is ready: search or ask with "as_of": "${name}".\n`);
      return 0;
    }
  }
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
