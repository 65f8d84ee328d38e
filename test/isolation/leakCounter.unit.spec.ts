/** The detector itself: a suite that reports "0 leaks" is only worth as much as this. */
import type { Response } from 'supertest';
import { LeakCounter } from './leakCounter';

const res = (status: number, type: string, body: unknown, headers: Record<string, string> = {}): Response =>
  ({ status, headers: { 'content-type': type, ...headers }, body, text: typeof body === 'string' ? body : JSON.stringify(body) }) as unknown as Response;

function counter(): LeakCounter {
  const c = new LeakCounter('self-test');
  c.addMarkers('acme', 'ACME-SECRET-7f3a');
  c.addMarkers('globex', 'GLOBEX-SECRET-2c9e');
  return c;
}

describe('LeakCounter', () => {
  it("flags the other tenant's marker in a body or a header, case-insensitively, but not the own one", async () => {
    const c = counter();
    await c.attack({ route: 'GET /x', attack: 'own', as: 'acme', expect: 200, send: async () => res(200, 'application/json', { t: 'ACME-SECRET-7f3a' }) });
    await c.attack({ route: 'GET /x', attack: 'body', as: 'acme', expect: 200, send: async () => res(200, 'application/json', { t: 'globex-secret-2C9E' }) });
    await c.attack({ route: 'GET /x', attack: 'header', as: 'acme', expect: 200, send: async () => res(200, 'application/json', {}, { location: '/GLOBEX-SECRET-2c9e' }) });
    await c.attack({ route: 'GET /x', attack: 'outsider', as: null, expect: 401, send: async () => res(401, 'application/problem+json', { status: 401, title: 't', detail: 'ACME-SECRET-7f3a' }) });
    await c.attack({ route: 'GET /x', attack: 'echo allowed', as: 'acme', expect: 200, allow: ['GLOBEX-SECRET-2c9e'], send: async () => res(200, 'application/json', { t: 'GLOBEX-SECRET-2c9e' }) });
    expect(c.outcomes.map((o) => [o.attack, o.leaked.length])).toEqual([
      ['own', 0],
      ['body', 1],
      ['header', 1],
      ['outsider', 1],
      ['echo allowed', 0],
    ]);
    expect(c.totalLeaks()).toBe(3);
    expect(() => c.assertClean()).toThrow(/LEAKED GLOBEX-SECRET-2c9e/);
  });

  it('requires problem+json with a matching status for errors, JSON for successes, and never a 5xx', async () => {
    const c = counter();
    await c.attack({ route: 'GET /y', attack: 'plain json error', as: 'acme', expect: 404, send: async () => res(404, 'application/json', { status: 404, title: 'x', detail: 'y' }) });
    await c.attack({ route: 'GET /y', attack: 'status mismatch', as: 'acme', expect: 404, send: async () => res(404, 'application/problem+json', { status: 400, title: 'x', detail: 'y' }) });
    await c.attack({ route: 'GET /y', attack: 'expected 500 still fails', as: 'acme', expect: 500, send: async () => res(500, 'application/problem+json', { status: 500, title: 'x', detail: 'y' }) });
    await c.attack({ route: 'GET /y', attack: 'html success', as: 'acme', expect: 200, send: async () => res(200, 'text/html', '<p>') });
    await c.attack({ route: 'GET /y', attack: 'good', as: 'acme', expect: [200, 404], send: async () => res(404, 'application/problem+json; charset=utf-8', { status: 404, title: 'x', detail: 'y' }) });
    const bad = c.failures().map((o) => o.attack);
    expect(bad).toEqual(['plain json error', 'status mismatch', 'expected 500 still fails', 'html success']);
    expect(c.table()).toEqual([expect.objectContaining({ route: 'GET /y', attacks: 5, leaks: 0, wrongStatus: 1, notProblemJson: 3, serverErrors: 1 })]);
    expect(c.format()).toMatch(/GET \/y\s+5\s+0\s+1\s+3\s+1/);
  });
});
