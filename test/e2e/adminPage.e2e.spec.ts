import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import type { Product } from '../../services/product';
import { ADMIN, provisionTenant, startTestProduct, type TestTenant, waitUntilIndexed } from '../support/product';
import { settle } from '../support/settle';
import { describeSkipped } from '../support/skip';

const CHROMIUM = '/usr/bin/chromium';
const SUITE = 'operator page in a real browser';

interface UsageDay {
  tenant_id: string;
  day: string;
  searches: number;
  questions: number;
  documents_stored: number;
  chunks_stored: number;
}

if (!existsSync(CHROMIUM)) {
  describeSkipped(SUITE, `Debian chromium not installed at ${CHROMIUM}`);
} else {
  describe(SUITE, () => {
    // Loaded lazily so a machine without the browser never needs the package at all.
    const { chromium } = require('playwright-core') as typeof import('playwright-core');
    type Context = Awaited<ReturnType<typeof chromium.launchPersistentContext>>;
    type Page = Awaited<ReturnType<Context['newPage']>>;

    let product: Product;
    let server: Server;
    let base: string;
    let acme: TestTenant;
    let globex: TestTenant;
    let context: Context | undefined;
    let page: Page;
    let profile: string;
    const browserProblems: string[] = [];
    const admin = { Authorization: `Bearer ${ADMIN}` };

    // Activity per tenant: [searches, questions].
    const activity = { acme: [3, 2], globex: [2, 1] } as const;

    beforeAll(async () => {
      product = await startTestProduct();
      server = await product.listen(0, '127.0.0.1');
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      [acme, globex] = await Promise.all([provisionTenant(product, 'acme'), provisionTenant(product, 'globex')]);

      const seed = async (t: TestTenant, text: string, [searches, questions]: readonly [number, number]) => {
        const up = await request(product.app).post('/v1/documents').set(t.auth).send({ filename: 'handbook.md', text });
        expect(up.status).toBe(202);
        await waitUntilIndexed(product, t, up.body.id);
        for (let i = 0; i < searches; i++) expect((await request(product.app).post('/v1/search').set(t.auth).send({ query: `vacation days ${i}` })).status).toBe(200);
        for (let i = 0; i < questions; i++) expect((await request(product.app).post('/v1/ask').set(t.auth).send({ question: `How many vacation days? (${i})` })).status).toBe(200);
      };
      await Promise.all([
        seed(acme, '# Acme\n\n## Vacation\n\nAcme employees receive twenty-six days of paid vacation per year.\n\n## Badges\n\nBadges are worn in the Rotterdam warehouse.', activity.acme),
        seed(globex, '# Globex\n\n## Vacation\n\nGlobex staff receive eighteen days of paid vacation.', activity.globex),
      ]);

      // Activity records are buffered and the projections asynchronous: every search and question
      // is counted (and audited) before the page is looked at.
      await settle(product, ['audit', 'analytics']);
      const days = (await request(product.app).get('/v1/admin/usage').set(admin)).body.days as UsageDay[];
      const count = (id: string, k: 'searches' | 'questions') => days.filter((d) => d.tenant_id === id).reduce((s, d) => s + d[k], 0);
      expect([acme.id, globex.id].map((id) => [count(id, 'searches'), count(id, 'questions')])).toEqual([[...activity.acme], [...activity.globex]]);
      // Two more lag samples (the server takes one a minute) so the lag plot has a line.
      await product.deps.manager.sample();
      await product.deps.manager.sample();

      profile = mkdtempSync(join(tmpdir(), 'tr-chromium-'));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1360, height: 900 },
        deviceScaleFactor: 1,
        timezoneId: 'UTC',
        locale: 'en-US',
      });
      page = context.pages()[0] ?? (await context.newPage());
      page.on('console', (m) => {
        // The 401s the tests provoke on purpose are logged by the browser as failed loads; anything else counts.
        if (/status of 401 \(Unauthorized\)/.test(m.text())) return;
        if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) browserProblems.push(`console ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => browserProblems.push(`page error: ${e.message}`));
      // Nothing may leave this origin.
      page.on('request', (r) => {
        if (!r.url().startsWith(base) && !r.url().startsWith('data:')) browserProblems.push(`off-origin request: ${r.url()}`);
      });
    }, 150_000); // a product, two seeded tenants and a browser, on a loaded CI machine

    afterAll(async () => {
      await context?.close();
      if (profile) rmSync(profile, { recursive: true, force: true });
      await product?.stop();
    });

    it('serves the page without a token, with a strict CSP and nosniff; its data calls need the token', async () => {
      const res = await request(product.app).get('/admin');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toMatch(/default-src 'none'/);
      expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
      expect(csp).toMatch(/style-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
      expect(csp).toMatch(/connect-src 'self'/);
      expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
      // No external resources, no innerHTML.
      expect(res.text).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
      expect(res.text).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
      for (const path of ['/v1/tenants', '/v1/admin/usage', '/v1/admin/projections', '/v1/admin/projections/history', `/v1/admin/tenants/${acme.id}/audit`]) {
        expect((await request(product.app).get(path)).status).toBe(401);
      }
    });

    it('shows a clear message for a wrong token', async () => {
      await page.goto(`${base}/admin`);
      await page.locator('#token').fill('not-the-operator-token');
      await page.locator('#signin').click();
      const err = page.locator('#login-error');
      await err.waitFor({ state: 'visible' });
      expect(await err.textContent()).toMatch(/rejected \(401 Unauthorized\)/);
      expect(await page.locator('#dashboard').isVisible()).toBe(false);
    });

    it('signs in with the operator token and lists both tenants with their state and quotas', async () => {
      await page.locator('#token').fill(ADMIN);
      await page.locator('#signin').click();
      await page.locator('#tenants-card[data-status="ready"]').waitFor();
      expect(await page.evaluate('sessionStorage.getItem("tenant-rag.operator-token")')).toBe(ADMIN);

      const tenants = (await request(product.app).get('/v1/tenants').set(admin)).body.items as { id: string; slug: string; status: string; quotas: { maxDocuments: number; maxBytes: number } }[];
      const rows = await page.locator('#tenants-body tr[data-tenant-id]').evaluateAll((trs) =>
        trs.map((tr) => ({ id: tr.getAttribute('data-tenant-id'), slug: tr.getAttribute('data-slug'), cells: Array.from(tr.querySelectorAll('td')).map((td) => (td as { textContent: string | null }).textContent) })),
      );
      expect(rows.map((r) => r.slug)).toEqual(expect.arrayContaining([acme.slug, globex.slug]));
      expect(rows).toHaveLength(tenants.length);
      for (const t of tenants) {
        const row = rows.find((r) => r.id === t.id)!;
        expect(row.cells[1]).toBe(t.slug);
        expect(row.cells[2]).toBe(t.status);
        expect(row.cells[3]).toBe(t.quotas.maxDocuments.toLocaleString('en-US'));
      }
    });

    it('plots usage per day with exactly the numbers the API returns, summed and per tenant', async () => {
      await page.locator('#usage-card[data-status="ready"]').waitFor();
      const from = await page.locator('#usage-from').inputValue();
      const to = await page.locator('#usage-to').inputValue();
      const usage = (await request(product.app).get(`/v1/admin/usage?from=${from}&to=${to}`).set(admin)).body as { days: UsageDay[] };
      expect(usage.days.length).toBeGreaterThan(0);

      const plotted = (chart: string) =>
        page.locator(`#${chart} g.bar`).evaluateAll((gs) => Object.fromEntries(gs.map((g) => [g.getAttribute('data-day'), Number(g.getAttribute('data-value'))])) as Record<string, number>);
      const expectActivity = async (rows: UsageDay[]) => {
        const bars = await plotted('chart-activity');
        expect(Object.keys(bars)).toHaveLength(14);
        const expected: Record<string, number> = {};
        for (const d of rows) expected[d.day] = (expected[d.day] ?? 0) + d.searches + d.questions;
        for (const [day, value] of Object.entries(bars)) expect([day, value]).toEqual([day, expected[day] ?? 0]);
        const total = rows.reduce((s, d) => s + d.searches + d.questions, 0);
        expect(await page.locator('#chart-activity').getAttribute('data-total')).toBe(String(total));
        expect(await page.locator('#activity-total').textContent()).toBe(String(total));
        // Stored levels on every day with a row (all activity of this test is on one day).
        const docs = await plotted('chart-docs');
        const chunks = await plotted('chart-chunks');
        for (const day of new Set(rows.map((d) => d.day))) {
          const onDay = rows.filter((d) => d.day === day);
          expect(docs[day]).toBe(onDay.reduce((s, d) => s + d.documents_stored, 0));
          expect(chunks[day]).toBe(onDay.reduce((s, d) => s + d.chunks_stored, 0));
        }
        return total;
      };

      const all = await expectActivity(usage.days);
      expect(all).toBe(activity.acme[0] + activity.acme[1] + activity.globex[0] + activity.globex[1]);
      expect(await page.locator('#kpi-searches').textContent()).toBe(String(activity.acme[0] + activity.globex[0]));

      await page.locator('#usage-tenant').selectOption(acme.id);
      await page.locator(`#chart-activity[data-total="${activity.acme[0] + activity.acme[1]}"]`).waitFor();
      await expectActivity(usage.days.filter((d) => d.tenant_id === acme.id));
      const stacked = await page.locator('#chart-activity rect[data-series]').evaluateAll((rs) => rs.map((r) => [r.getAttribute('data-series'), Number(r.getAttribute('data-value'))]));
      expect(stacked).toEqual(expect.arrayContaining([['searches', activity.acme[0]], ['questions', activity.acme[1]]]));

      await page.locator('#usage-tenant').selectOption('');
      await page.locator(`#chart-activity[data-total="${all}"]`).waitFor();
    });

    it('lists the projections and plots their lag history', async () => {
      await page.locator('#projections-card[data-status="ready"]').waitFor();
      const names = await page.locator('#projections-body tr[data-projection]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-projection')));
      expect(names).toEqual(expect.arrayContaining(['platform', 'catalog', 'audit', 'analytics']));

      const history = (await request(product.app).get('/v1/admin/projections/history').set(admin)).body.items as { at: string; lag: Record<string, number | null> }[];
      expect(history.length).toBeGreaterThanOrEqual(2);
      const points = await page.locator('#chart-lag circle[data-projection]').evaluateAll((cs) =>
        cs.map((c) => `${c.getAttribute('data-projection')}@${c.getAttribute('data-at')}=${c.getAttribute('data-value')}`),
      );
      // The server samples once a minute and only appends: the page shows the history as it was
      // when it loaded, the first `samples` entries of what the API returns now.
      const samples = Number(await page.locator('#chart-lag').getAttribute('data-samples'));
      expect(samples).toBeGreaterThanOrEqual(2);
      expect(samples).toBeLessThanOrEqual(history.length);
      const expected = history.slice(0, samples).flatMap((h) => Object.entries(h.lag).filter(([, v]) => typeof v === 'number').map(([n, v]) => `${n}@${h.at}=${v}`));
      expect(points.sort()).toEqual(expected.sort());
    });

    it('shows recent audit events of the selected tenant', async () => {
      const audit = async (t: TestTenant) => {
        const api = (await request(product.app).get(`/v1/admin/tenants/${t.id}/audit?limit=20`).set(admin)).body.items as { seq: number; type: string }[];
        expect(api.length).toBeGreaterThan(0);
        await page.locator('#audit-card[data-status="ready"]').waitFor();
        const rows = await page.locator('#audit-body tr[data-seq]').evaluateAll((trs) => trs.map((tr) => [Number(tr.getAttribute('data-seq')), tr.getAttribute('data-type')]));
        expect(rows).toEqual(api.map((a) => [a.seq, a.type]));
        return rows.map((r) => r[1]);
      };
      // Clicking a tenant row selects it.
      await page.locator(`#tenants-body tr[data-slug="${globex.slug}"]`).click();
      await page.locator(`#tenants-body tr.selected[data-slug="${globex.slug}"]`).waitFor();
      expect(await page.locator('#audit-tenant').inputValue()).toBe(globex.id);
      await page.locator('#audit-sub', { hasText: globex.slug }).waitFor();
      expect(await audit(globex)).toEqual(expect.arrayContaining(['SearchPerformed', 'QuestionAsked']));

      await page.locator('#audit-tenant').selectOption(acme.id);
      await page.locator('#audit-sub', { hasText: acme.slug }).waitFor();
      expect(await audit(acme)).toEqual(expect.arrayContaining(['SearchPerformed']));
    });

    it('looks right: saves a screenshot, and the browser saw no CSP violation, error or off-origin request', async () => {
      await page.locator('#projections-card[data-status="ready"]').waitFor();
      mkdirSync(join(process.cwd(), 'test-output'), { recursive: true });
      const shot = join(process.cwd(), 'test-output', 'admin-page.png');
      await page.screenshot({ path: shot, fullPage: true });
      // The README's picture is refreshed on request only: a test run leaves the clone clean.
      if (process.env.UPDATE_SCREENSHOTS === '1') copyFileSync(shot, join(process.cwd(), 'docs', 'admin-page.png'));
      expect(browserProblems).toEqual([]);
    });

    it('puts hostile tenant names into the DOM as text, never as markup', async () => {
      const name = '<img src=x id=pwned> & "Initech"';
      const res = await request(product.app)
        .post('/v1/tenants')
        .set(admin)
        .send({ name, slug: `initech-${process.pid}`, owner: { email: 'owner@initech.test', password: 'correct horse battery staple' } });
      expect(res.status).toBe(201);
      await page.locator('#refresh').click();
      const row = page.locator(`#tenants-body tr[data-slug="initech-${process.pid}"]`);
      await row.waitFor();
      expect(await row.locator('td').first().locator('div').first().textContent()).toBe(name);
      expect(await page.locator('#pwned').count()).toBe(0);
      expect(await page.locator('#tenants-body img').count()).toBe(0);
    });

    it('a token that stops working returns to the sign-in form with a 401 message', async () => {
      await page.evaluate('sessionStorage.setItem("tenant-rag.operator-token", "revoked-token")');
      await page.locator('#refresh').click();
      await page.locator('#login-error').waitFor({ state: 'visible' });
      expect(await page.locator('#login-error').textContent()).toMatch(/401/);
      expect(await page.evaluate('sessionStorage.getItem("tenant-rag.operator-token")')).toBeNull();
      await page.screenshot({ path: join(process.cwd(), 'test-output', 'admin-page-signin.png') });
      expect(browserProblems).toEqual([]);
    });
  });
}
