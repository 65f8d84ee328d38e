/**
 * The command handler against the real PostgreSQL event store: commands that lose an
 * optimistic-concurrency race are decided again on the new state (none lost, none answered 409
 * while the stream settles), a decision that the new state refuses gets the decider's own error,
 * and a command pinned with If-Match still answers 412 at once.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { streamId } from '../../contracts/naming';
import { createPostgresEventStore, type PostgresEventStore } from '../../infra/eventstore/postgres';
import { createPool } from '../../infra/postgres/pool';
import { dropDatabase, freshDatabase } from '../../test/support/postgres';
import { decide, type TenantCommand } from '../tenants/decide';
import { tenantAggregate } from '../tenants/tenant';
import { handle, type CommandContext } from './commandHandler';
import { ConflictError, PreconditionFailedError } from './errors';

describe('command handler: optimistic concurrency on a real event store', () => {
  let url: string;
  let pool: pg.Pool;
  let store: PostgresEventStore;
  let tenantId: string;
  const ctx = (): CommandContext => ({ tenantId, actor: 'user:test', correlationId: randomUUID(), now: new Date() });
  const run = (command: TenantCommand, options?: { ifMatch?: bigint }) =>
    handle(store, streamId('tenant', tenantId), tenantAggregate, ctx(), (s) => decide(command, s), options);
  const token = (name: string): TenantCommand => ({ type: 'IssueApiToken', data: { tokenId: randomUUID(), name, prefix: 'trag_xxxxxxx', hash: randomUUID(), role: 'viewer' } });

  beforeAll(async () => {
    url = await freshDatabase();
    pool = createPool(url, { max: 20 });
    store = await createPostgresEventStore(pool);
  });
  afterAll(async () => {
    await store?.close();
    await pool?.end();
    if (url) await dropDatabase(url);
  });
  beforeEach(async () => {
    tenantId = randomUUID();
    await run({
      type: 'ProvisionTenant',
      data: { tenantId, name: 'Race', slug: `race-${tenantId.slice(0, 8)}`, quotas: { maxDocuments: 10, maxBytes: 1e6 }, rateLimit: { perSecond: 10, burst: 10 }, owner: { userId: randomUUID(), email: 'o@race.test', passwordHash: 'x' } },
    });
  });

  it('keeps every one of 30 concurrent commands while another writer keeps appending to the stream', async () => {
    // The other writer stands for a second gateway process: this process's queue does not hold it back.
    let stop = false;
    let foreign = 0;
    const other = (async () => {
      while (!stop && foreign < 60) {
        await store.appendToStream(streamId('tenant', tenantId), [{ eventId: randomUUID(), type: 'TenantLimitsChanged', data: { quotas: { maxDocuments: 10, maxBytes: 1e6 }, rateLimit: { perSecond: 10, burst: 10 } }, metadata: { ...ctx(), causationId: null, schemaVersion: 1, occurredAt: new Date().toISOString() } as never }], { expectedRevision: 'any' });
        foreign++;
      }
    })();
    const commands = Array.from({ length: 30 }, (_, i) => token(`t${i}`));
    const settled = await Promise.allSettled(commands.map((c) => run(c)));
    stop = true;
    await other;
    expect(settled.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason))).toEqual([]);
    const { events } = await store.readStream(streamId('tenant', tenantId));
    const issued = events.filter((e) => e.type === 'ApiTokenIssued').map((e) => (e.data as { tokenId: string }).tokenId);
    expect(issued.sort()).toEqual(commands.map((c) => (c as { data: { tokenId: string } }).data.tokenId).sort());
    expect(events.filter((e) => e.type === 'TenantLimitsChanged')).toHaveLength(foreign);
    expect(foreign).toBeGreaterThan(0);
  });

  it('decides a lost race again: of two users added at once with one email, one is added and the other gets the decider answer', async () => {
    const add = (): TenantCommand => ({ type: 'AddUser', data: { userId: randomUUID(), email: 'same@race.test', role: 'viewer', passwordHash: 'x' } });
    const settled = await Promise.allSettled([run(add()), run(add()), run(add())]);
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    for (const s of settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected')) {
      expect(s.reason).toBeInstanceOf(ConflictError);
      expect(String(s.reason.message)).toMatch(/email exists/);
    }
    const { events } = await store.readStream(streamId('tenant', tenantId));
    expect(events.filter((e) => e.type === 'UserAdded' && (e.data as { email: string }).email === 'same@race.test')).toHaveLength(1);
  });

  it('answers 412 at once to a command pinned to a revision that moved, and appends nothing', async () => {
    const { revision } = await store.readStream(streamId('tenant', tenantId));
    await run(token('moves it'));
    await expect(run(token('pinned'), { ifMatch: revision! })).rejects.toBeInstanceOf(PreconditionFailedError);
    const { events } = await store.readStream(streamId('tenant', tenantId));
    expect(events.filter((e) => e.type === 'ApiTokenIssued').map((e) => (e.data as { name: string }).name)).toEqual(['moves it']);
  });
});
