import type { Pool, PoolClient } from 'pg';
import { parseStreamId, tenantSchema } from '../contracts/naming';
import type { EventStore, GlobalPosition, RecordedEvent } from '../services/core/eventStore';
import { START } from '../services/core/eventStore';
import { catalogTable } from '../infra/postgres/schema';
import { ANALYTICS_TABLES } from './analytics/analyticsProjection';
import { linkTenantInTransaction, prepareTenantSwitch } from './catalog/catalogRebuild';
import { PLATFORM_TABLES, platformTable } from './platform/platformProjection';
import { auditTable } from './audit/auditProjection';
import type { RebuildProgress } from './rebuild';
import { applyBatch, checkpointName, type Projection, type RunnerOptions, tenantMismatch } from './runner';

/**
 * Rebuilds ONE tenant's rows of a live read model from position 0 of the event store, while
 * the live projection keeps serving and writing every tenant (this one included):
 *
 * 1. The tenant's events, in global order, are applied by the projection made at SCRATCH_VERSION
 *    into scratch tables beside the live ones, never past what the live projection has committed
 *    (its checkpoint), so nothing the live projection has not applied yet is in the scratch copy.
 * 2. Switch, in one transaction: lock the live tables EXCLUSIVE (writers wait, SELECTs go on), read
 *    the live checkpoint (now frozen for this tenant's rows), apply the tenant's remaining events
 *    up to it into the scratch copy, replace the tenant's live rows by the scratch rows (DELETE +
 *    INSERT ... SELECT: readers see the old rows or the new ones, never none), keep sequences
 *    ahead, drop the scratch tables. Before COMMIT the locks are raised to ACCESS EXCLUSIVE with
 *    a short timeout: that is granted only when no other transaction holds any lock on the live
 *    tables, i.e. no live batch has read the old rows it would then build on (the audit chain's
 *    previous hash, analytics' previous document size). If one has, the switch rolls back and is
 *    retried; readers wait at most that timeout and never see an error or an empty table.
 *
 * The same machinery rebuilds EVERY tenant's rows (`tenantId: null`) of a projection whose tables
 * all carry a tenant column: the whole platform read model, in place, without creating or
 * dropping a schema or role while it runs (projections/platform/platformProjection.ts reconciles
 * those afterwards). Its progress is a plain RebuildProgress (no `tenant`).
 */
export interface TenantRebuildProgress extends RebuildProgress {
  tenant: string;
}


/** Version whose tables hold a tenant rebuild's scratch copy: never a live or building version (those start at 1). */
export const SCRATCH_VERSION = 0;

/** A table of a projection version and how a tenant's rows are told apart (null: the table is the tenant's own). */
export interface TenantTable {
  schema: string;
  table: string;
  tenantColumn: string | null;
  /**
   * Live rows a rebuild of every tenant keeps although the log no longer holds their events (SQL
   * over the live table aliased `live`, `$scratch` standing for the scratch table): the record of
   * an erased tenant, whose streams are gone, stays as the live model has it.
   */
  keepWhenWhole?: string;
}

/** The tables each tenant-rebuildable projection writes, per version. */
const TENANT_TABLES: Record<string, (version: number, tenantId: string) => TenantTable[]> = {
  audit: (version, tenantId) => [{ schema: tenantSchema(tenantId), table: auditTable(version), tenantColumn: null }],
  analytics: (version) => ANALYTICS_TABLES.map((t) => ({ schema: 'analytics', table: `${t}_v${version}`, tenantColumn: 'tenant_id' })),
  platform: (version) =>
    PLATFORM_TABLES.map((t) => ({
      schema: 'platform',
      table: platformTable(t, version),
      tenantColumn: 'tenant_id',
      ...(t === 'tenants' ? { keepWhenWhole: `live.status = 'deleted' AND NOT EXISTS (SELECT 1 FROM $scratch s WHERE s.tenant_id = live.tenant_id)` } : {}),
    })),
  catalog: (version, tenantId) => (['documents', 'document_index'] as const).map((t) => ({ schema: tenantSchema(tenantId), table: catalogTable(t, version), tenantColumn: null })),
};

/**
 * Content-derived state a projection's scratch copy must take over before its rows replace the
 * live ones: the catalog's readiness comes from the tenant's chunk sets, not from events.
 * `prepare` runs after the scratch copy has caught up (it may wait for the indexing workers),
 * `beforeSwap` inside the switch, under the locks (the indexer's writes wait).
 */
const TENANT_HOOKS: Record<string, { prepare(pool: Pool, tenantId: string, liveVersion: number, log: Log): Promise<void>; beforeSwap(client: PoolClient, tenantId: string): Promise<void> }> = {
  catalog: {
    prepare: (pool, tenantId, liveVersion, log) => prepareTenantSwitch(pool, tenantId, SCRATCH_VERSION, liveVersion, { log }),
    beforeSwap: async (client, tenantId) => void (await linkTenantInTransaction(client, tenantId, SCRATCH_VERSION)),
  },
};

export const tenantRebuildable = (name: string): boolean => name in TENANT_TABLES;
/** Projections whose every tenant's rows can be rebuilt in place at once: every table has a tenant column. */
export const wholeRowsRebuildable = (name: string): boolean => !!TENANT_TABLES[name]?.(SCRATCH_VERSION, '').every((t) => t.tenantColumn);

const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
const qualified = (t: TenantTable) => `${ident(t.schema)}.${ident(t.table)}`;

type Log = NonNullable<RunnerOptions['log']>;

export interface TenantRebuildOptions {
  store: EventStore;
  pool: Pool;
  /** Makes the projection at a version (the definition's `make`). */
  make: (version: number) => Projection;
  name: string;
  liveVersion: number;
  /** How the live projection commits its progress: one global checkpoint, or one per (category, tenant). */
  source: 'store' | 'kafka';
  /** The tenant whose rows are rebuilt; null: every tenant's (wholeRowsRebuildable projections only). */
  tenantId: string | null;
  slug: string | null;
  batchSize?: number;
  /** How long the final ACCESS EXCLUSIVE may wait (readers may wait that long, once per attempt). */
  upgradeTimeoutMs?: number;
  maxSwitchAttempts?: number;
  log?: Log;
  onProgress?: (p: TenantRebuildProgress | RebuildProgress) => void;
}

/** Where the live projection is: the highest position applied, per (stream category, tenant). */
type Frontier = (category: string, tenantId: string) => GlobalPosition;

async function liveFrontier(q: Pool | PoolClient, base: string, source: 'store' | 'kafka', tenantId: string | null): Promise<{ of: Frontier; max: GlobalPosition }> {
  if (source === 'store') {
    const r = await q.query<{ position: string }>('SELECT position FROM platform.checkpoints WHERE projection = $1', [base]);
    const p = r.rows[0]?.position ?? START;
    return { of: () => p, max: p };
  }
  // Kafka delivers each (category, tenant) in order; the projection checkpoints each as `<base>/<category>/<tenant>`.
  const r = await q.query<{ projection: string; position: string }>('SELECT projection, position FROM platform.checkpoints WHERE projection LIKE $1', [`${base}/%/${tenantId ?? '%'}`]);
  const byKey = new Map(r.rows.map((row) => [row.projection.slice(base.length + 1), row.position]));
  const max = [...byKey.values()].reduce((a, b) => (b > a ? b : a), START);
  return { of: (c, t) => byKey.get(`${c}/${t}`) ?? START, max };
}

/** The tenant's events (every tenant's: null) in the store, when the adapter can count them cheaply (progress and ETA). */
async function countTenantEvents(store: EventStore, pool: Pool, tenantId: string | null, categories: ReadonlySet<string> | null): Promise<number | null> {
  const schema = (store as { schema?: string }).schema;
  if (store.kind !== 'postgres' || !schema) return null;
  if (tenantId === null) {
    const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.events WHERE $1::text[] IS NULL OR split_part(stream_id, '-', 1) = ANY($1)`, [categories ? [...categories] : null]);
    return Number(r.rows[0]?.n ?? 0);
  }
  // Stream ids are `<category>-<tenantId>` or `<category>-<tenantId>.<entity>` (contracts/naming.ts).
  const r = await pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM ${schema}.events WHERE (stream_id LIKE '%-' || $1 OR stream_id LIKE '%-' || $1 || '.%') AND ($2::text[] IS NULL OR split_part(stream_id, '-', 1) = ANY($2))`,
    [tenantId, categories ? [...categories] : null],
  );
  return Number(r.rows[0]?.n ?? 0);
}

async function ownerOf(q: Pool | PoolClient, t: TenantTable): Promise<string | null> {
  const r = await q.query<{ owner: string }>(
    `SELECT pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'`,
    [t.schema, t.table],
  );
  return r.rows[0]?.owner ?? null;
}

/** Runs statements as the table's owner (tenant tables belong to a NOLOGIN role the platform role may assume). */
async function asOwner<T>(client: PoolClient, owner: string, fn: () => Promise<T>): Promise<T> {
  await client.query(`SET LOCAL ROLE ${ident(owner)}`);
  const out = await fn();
  await client.query('RESET ROLE');
  return out;
}

async function dropScratch(client: PoolClient, tables: TenantTable[]): Promise<void> {
  for (const t of tables) {
    const owner = await ownerOf(client, t);
    if (owner) await asOwner(client, owner, () => client.query(`DROP TABLE IF EXISTS ${qualified(t)}`));
  }
}

async function deleteScratchCheckpoints(q: Pool | PoolClient, scratch: Pick<Projection, 'name' | 'version'>): Promise<void> {
  await q.query('DELETE FROM platform.checkpoints WHERE projection = $1 OR projection LIKE $2', [checkpointName(scratch), `${checkpointName(scratch)}/%`]);
}

/** Key of what the scratch copy holds: per (stream category, tenant), as the live frontier. */
const appliedKey = (e: RecordedEvent) => {
  const s = parseStreamId(e.streamId);
  return `${s.category}/${s.tenantId}`;
};

/**
 * Which of the tenant's (every tenant's: null) events, read in global order, go into the scratch
 * copy: those after what it already holds and not after the live frontier of their category and
 * tenant. `applied` is per (category, tenant).
 */
function selector(tenantId: string | null, applied: Map<string, GlobalPosition>, consumed: ReadonlySet<string> | null) {
  return (e: RecordedEvent, frontier: Frontier): 'mine' | 'later' | 'skip' => {
    const s = parseStreamId(e.streamId);
    // Other tenants' events, and events the live projection dead-letters, are not this tenant's rows.
    if (!s.tenantId || (tenantId !== null && s.tenantId !== tenantId) || tenantMismatch(e)) return 'skip';
    // From Kafka the live projection is never delivered a topic it does not consume: such an
    // event has no checkpoint to wait for (it would hold the cursor back for good).
    if (consumed && !consumed.has(s.category)) return 'skip';
    if (e.position <= (applied.get(appliedKey(e)) ?? START)) return 'skip';
    return e.position <= frontier(s.category, s.tenantId) ? 'mine' : 'later';
  };
}

export async function rebuildTenant(opts: TenantRebuildOptions): Promise<TenantRebuildProgress | RebuildProgress> {
  try {
    return await rebuildTenantOnce(opts);
  } catch (err) {
    // Leave no scratch copy behind (the next attempt would drop it anyway).
    const tables = TENANT_TABLES[opts.name]?.(SCRATCH_VERSION, opts.tenantId ?? '') ?? [];
    await withClient(opts.pool, (c) => dropScratch(c, tables)).catch(() => undefined);
    await deleteScratchCheckpoints(opts.pool, { name: opts.name, version: SCRATCH_VERSION }).catch(() => undefined);
    throw err;
  }
}

async function rebuildTenantOnce(opts: TenantRebuildOptions): Promise<TenantRebuildProgress | RebuildProgress> {
  const { store, pool, tenantId } = opts;
  const log = opts.log ?? (() => undefined);
  const batchSize = opts.batchSize ?? 1000;
  const tablesOf = TENANT_TABLES[opts.name];
  if (!tablesOf) throw new Error(`projection ${opts.name} cannot be rebuilt per tenant`);
  if (tenantId === null && !wholeRowsRebuildable(opts.name)) throw new Error(`projection ${opts.name} cannot be rebuilt in place for every tenant`);
  if (opts.liveVersion === SCRATCH_VERSION) throw new Error(`version ${SCRATCH_VERSION} is reserved for scratch copies`);
  const live = tablesOf(opts.liveVersion, tenantId ?? '');
  const scratchTables = tablesOf(SCRATCH_VERSION, tenantId ?? '');
  const base = checkpointName({ name: opts.name, version: opts.liveVersion });
  const scratchId = { name: opts.name, version: SCRATCH_VERSION };

  const bulk = opts.make(SCRATCH_VERSION);
  const consumed = opts.source === 'kafka' ? new Set(bulk.categories) : null;
  const started = Date.now();
  const progress: TenantRebuildProgress | RebuildProgress = {
    name: opts.name,
    version: opts.liveVersion,
    ...(opts.slug !== null ? { tenant: opts.slug } : {}),
    done: 0,
    total: await countTenantEvents(store, pool, tenantId, consumed),
    eventsPerSecond: 0,
    etaSeconds: null,
    state: 'rebuilding',
    error: null,
  };
  const report = () => {
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? progress.done / seconds : 0;
    if (progress.total !== null && progress.done > progress.total) progress.total = progress.done;
    progress.eventsPerSecond = Math.round(rate);
    progress.etaSeconds = progress.total !== null && rate > 0 ? Math.max(0, Math.round((progress.total - progress.done) / rate)) : null;
    opts.onProgress?.(progress);
  };
  report();

  // A crashed earlier attempt may have left its scratch copy.
  await withClient(pool, (c) => dropScratch(c, scratchTables));
  await deleteScratchCheckpoints(pool, scratchId);
  if (tenantId === null) {
    // Every live table has a scratch twin from the start, so the swap replaces all of its rows.
    await withClient(pool, async (c) => {
      for (const [i, t] of live.entries()) {
        const owner = await ownerOf(c, t);
        if (owner) await asOwner(c, owner, () => c.query(`CREATE TABLE ${qualified(scratchTables[i]!)} (LIKE ${qualified(t)} INCLUDING ALL)`));
      }
    });
  }

  // Phase 1: the scratch copy follows the live projection's committed frontier, outside any lock.
  const applied = new Map<string, GlobalPosition>();
  const pick = selector(tenantId, applied, consumed);
  let cursor: GlobalPosition = START; // every event at or before it was handled
  for (;;) {
    const frontier = await liveFrontier(pool, base, opts.source, tenantId);
    let scan = cursor;
    let blocked = false;
    let moved = 0;
    for (;;) {
      const events = await store.readAll({ after: scan, limit: batchSize });
      if (events.length === 0) break;
      const mine: RecordedEvent[] = [];
      for (const e of events) {
        const verdict = pick(e, frontier.of);
        if (verdict === 'mine') mine.push(e);
        if (verdict === 'later') blocked = true;
        else if (!blocked) cursor = e.position;
      }
      if (mine.length) {
        await applyBatch(pool, bulk, mine, 'global', log);
        for (const e of mine) applied.set(appliedKey(e), e.position);
        progress.done += mine.length;
        moved += mine.length;
        report();
      }
      scan = events[events.length - 1]!.position;
      if (scan > frontier.max) break; // nothing further is covered by the live frontier
    }
    if (moved < batchSize) break; // close enough: the switch applies the rest under the locks
  }

  if (tenantId !== null) await TENANT_HOOKS[opts.name]?.prepare(pool, tenantId, opts.liveVersion, log);

  // Phase 2: the switch, retried while live writers hold the tables.
  const attempts = opts.maxSwitchAttempts ?? 40;
  for (let attempt = 1; ; attempt++) {
    const outcome = await switchOnce(opts, live, scratchTables, base, new Map(applied), consumed, cursor, log);
    if (outcome.switched) {
      progress.done += outcome.applied;
      progress.state = 'switched';
      report();
      log('info', tenantId === null ? 'read model rebuilt in place and switched' : 'tenant read model rebuilt and switched', { name: opts.name, tenantId, events: progress.done, attempts: attempt });
      return progress;
    }
    if (attempt >= attempts) throw new Error(`could not switch ${opts.name}${opts.slug !== null ? ` for tenant ${opts.slug}` : ''}: live writers kept its tables busy (${attempts} attempts)`);
    await new Promise((r) => setTimeout(r, Math.min(2000, 50 * attempt)));
  }
}

async function withClient<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

const LOCK_BUSY = new Set(['55P03', '40P01']); // lock_not_available (timeout), deadlock_detected

async function switchOnce(
  opts: TenantRebuildOptions,
  live: TenantTable[],
  scratch: TenantTable[],
  base: string,
  applied: Map<string, GlobalPosition>,
  consumed: ReadonlySet<string> | null,
  cursor: GlobalPosition,
  log: Log,
): Promise<{ switched: boolean; applied: number }> {
  const { store, pool, tenantId } = opts;
  const client = await pool.connect();
  try {
    await client.query('BEGIN'); // READ COMMITTED: each statement below sees what committed before it
    await client.query(`SET LOCAL lock_timeout = '1s'`);
    // Locks first, in one order, before anything else: the live projection's batches then either
    // committed before us or wait for us. EXCLUSIVE lets plain SELECTs (the queries) go on.
    const owners = new Map<TenantTable, string>();
    for (const t of live) {
      const owner = await ownerOf(client, t);
      if (owner) owners.set(t, owner);
    }
    const present = live.filter((t) => owners.has(t));
    for (const t of present) await asOwner(client, owners.get(t)!, () => client.query(`LOCK TABLE ${qualified(t)} IN EXCLUSIVE MODE`));

    // The tenant's rows in the live tables now reflect exactly its events up to this frontier.
    const frontier = await liveFrontier(client, base, opts.source, tenantId);
    const pick = selector(tenantId, applied, consumed);
    const projection = opts.make(SCRATCH_VERSION); // fresh: its table caches must not outlive a rollback
    let scan = cursor;
    let count = 0;
    for (;;) {
      const events = await store.readAll({ after: scan, limit: opts.batchSize ?? 1000 });
      if (events.length === 0) break;
      const mine: RecordedEvent[] = [];
      for (const e of events) {
        if (pick(e, frontier.of) !== 'mine') continue;
        applied.set(appliedKey(e), e.position);
        count++;
        if (projection.canHandle(e.type)) mine.push(e);
      }
      // In this transaction (applyBatch would commit on its own): batched when the projection can.
      if (projection.applyMany && mine.length) {
        await projection.applyMany(client, mine);
        await client.query('RESET ROLE; SET LOCAL search_path TO platform');
      } else {
        for (const e of mine) {
          await projection.apply(client, e);
          // An apply may have entered the tenant's scope; go on as the platform role.
          await client.query('RESET ROLE; SET LOCAL search_path TO platform');
        }
      }
      scan = events[events.length - 1]!.position;
      if (scan > frontier.max) break;
    }

    if (tenantId !== null) await TENANT_HOOKS[opts.name]?.beforeSwap(client, tenantId);
    for (const t of live) {
      const s = scratch[live.indexOf(t)]!;
      const sOwner = await ownerOf(client, s);
      const owner = owners.get(t);
      if (!owner) {
        // The live projection never wrote this table, so nothing up to its frontier belongs there.
        if (sOwner && (await client.query(`SELECT 1 FROM ${qualified(s)} LIMIT 1`)).rowCount) throw new Error(`${qualified(t)} is missing while the scratch copy has rows`);
        continue;
      }
      await asOwner(client, owner, async () => {
        const where = t.tenantColumn && tenantId !== null ? `WHERE ${ident(t.tenantColumn)} = $1` : '';
        const params = t.tenantColumn && tenantId !== null ? [tenantId] : [];
        if (tenantId === null && t.keepWhenWhole) {
          await client.query(`DELETE FROM ${qualified(t)} AS live WHERE NOT (${t.keepWhenWhole.replaceAll('$scratch', qualified(s))})`);
        } else {
          await client.query(`DELETE FROM ${qualified(t)} ${where}`, params);
        }
        if (!sOwner) return; // the tenant has no rows in this table
        const cols = (
          await client.query<{ attname: string; seq: string | null }>(
            `SELECT attname, pg_get_serial_sequence($1, attname) AS seq FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
            [qualified(t)],
          )
        ).rows;
        const list = cols.map((c) => ident(c.attname)).join(', ');
        const order = cols.some((c) => c.seq) ? `ORDER BY ${cols.filter((c) => c.seq).map((c) => ident(c.attname)).join(', ')}` : '';
        await client.query(`INSERT INTO ${qualified(t)} (${list}) SELECT ${list} FROM ${qualified(s)} ${where} ${order}`, params);
        // Keep serial columns ahead of every value they ever gave, so cursors never see a value twice.
        for (const c of cols.filter((x) => x.seq)) {
          await client.query(
            `SELECT setval($1, greatest(coalesce((SELECT max(${ident(c.attname)}) FROM ${qualified(t)}), 0), (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${c.seq!}), 1))`,
            [c.seq],
          );
        }
      });
    }
    await dropScratch(client, scratch);
    await deleteScratchCheckpoints(client, { name: opts.name, version: SCRATCH_VERSION });

    // Granted only when no other transaction holds a lock on these tables: no live batch has read
    // the rows being replaced and waits to write what it computed from them.
    await client.query(`SET LOCAL lock_timeout = '${opts.upgradeTimeoutMs ?? 250}ms'`);
    for (const t of present) await asOwner(client, owners.get(t)!, () => client.query(`LOCK TABLE ${qualified(t)} IN ACCESS EXCLUSIVE MODE`));
    await client.query('COMMIT');
    return { switched: true, applied: count };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    const code = (err as { code?: string }).code;
    if (code && LOCK_BUSY.has(code)) {
      log('info', 'tenant rebuild switch postponed: live writers hold the tables', { name: opts.name, tenantId, code });
      return { switched: false, applied: 0 };
    }
    throw err;
  } finally {
    client.release();
  }
}
