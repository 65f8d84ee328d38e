import type { Pool } from 'pg';
import { parseStreamId } from '../contracts/naming';
import type { EventBus } from '../services/core/eventBus';
import type { EventStore, GlobalPosition } from '../services/core/eventStore';
import { ConflictError, NotFoundError } from '../services/core/errors';
import { activeVersion, type RebuildProgress, rebuild } from './rebuild';
import { checkpointName, type Projection, type RunningProjection, type RunnerOptions, startKafkaProjection, startProjection, watchProjection } from './runner';
import { rebuildTenant, tenantRebuildable, type TenantRebuildProgress, wholeRowsRebuildable } from './tenantRebuild';

/**
 * A projection by name; `rebuildable` ones (`true`) are built per version (tables suffixed `_v<N>`).
 * `'rows'`: rebuilt in place, one tenant's rows or every tenant's at once, through a scratch copy
 * swapped in (projections/tenantRebuild.ts); its version does not change.
 */
export interface ProjectionDefinition {
  name: string;
  make: (version: number) => Projection;
  defaultVersion: number;
  rebuildable: boolean | 'rows';
  /**
   * After a tenant's rows (null: every tenant's) were swapped in: what the rows imply beyond
   * themselves (the platform's schemas and roles), caches of those tenants.
   */
  afterRowsRebuild?(tenantId: string | null): Promise<void>;
  /**
   * For a read model that readers reach through views on the active version's tables (the
   * catalog, projections/catalog/catalogRebuild.ts): `prepare` clears leftovers of a version
   * before it is rebuilt, `switchTo` points every tenant's views at a version (`waitMs`: how long
   * it may wait for content-derived state to be re-linked; 0 at start-up, where it only realigns
   * views a crash left on another version), `retire` drops a version no view reads any more.
   */
  views?: {
    prepare(pool: Pool, version: number): Promise<void>;
    switchTo(pool: Pool, version: number, opts?: { waitMs?: number }): Promise<number>;
    retire(pool: Pool, version: number): Promise<void>;
  };
}

export interface ProjectionInfo {
  name: string;
  version: number;
  source: 'store' | 'kafka';
  state: string;
  error: string | null;
  position: string;
  lag_events: number | null;
  lag_seconds: number | null;
  rebuildable: boolean;
  /** Whether one tenant's rows can be rebuilt (`{"tenant": "<slug>"}`). */
  tenant_rebuildable: boolean;
  /** The running or last rebuild: of the whole projection, or of one tenant's rows (`tenant`: its slug). */
  rebuild: RebuildProgress | TenantRebuildProgress | null;
}

/**
 * Whether a projection version fed by Kafka has applied the store's events up to `head` (those
 * after `after` are looked at; the rebuild checkpointed everything up to it): every (category,
 * tenant) key it consumes must be checkpointed at or past the store's last event of that key.
 * False when that does not happen within `timeoutMs`.
 */
async function keyedCaughtUp(store: EventStore, pool: Pool, projection: Projection, after: GlobalPosition, head: GlobalPosition, timeoutMs: number): Promise<boolean> {
  const base = checkpointName(projection);
  const targets = new Map<string, GlobalPosition>();
  for (let at = after; at < head; ) {
    const events = await store.readAll({ after: at, limit: 5000 });
    if (events.length === 0) break;
    for (const e of events) {
      if (e.position > head) break;
      const s = parseStreamId(e.streamId);
      // The key applyBatch checkpoints in keyed mode.
      if (projection.categories.includes(s.category)) targets.set(`${base}/${s.category}/${s.tenantId ?? 'none'}`, e.position);
    }
    at = events[events.length - 1]!.position;
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (targets.size === 0) return true;
    const r = await pool.query<{ projection: string; position: string }>('SELECT projection, position FROM platform.checkpoints WHERE projection = ANY($1)', [[...targets.keys()]]);
    for (const row of r.rows) if (row.position >= targets.get(row.projection)!) targets.delete(row.projection);
    if (targets.size === 0) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Runs the projections this process owns (others are watched through their checkpoints),
 * lists their progress, and rebuilds a rebuildable one beside the live version, switching
 * reads atomically (platform.projection_versions) when it has caught up.
 */
export async function startProjections(opts: {
  store: EventStore;
  pool: Pool;
  bus: EventBus | null;
  definitions: ProjectionDefinition[];
  local: (name: string) => boolean;
  runner?: RunnerOptions;
}) {
  const { store, pool, bus, definitions } = opts;
  const log = opts.runner?.log ?? (() => undefined);
  const running = new Map<string, RunningProjection>();
  const versions = new Map<string, number>();
  const rebuilds = new Map<string, RebuildProgress | TenantRebuildProgress>();
  /** Projections with a rebuild starting or running (whole or one tenant): one at a time each. */
  const busy = new Set<string>();
  const isTenantRebuild = (p: RebuildProgress | TenantRebuildProgress | undefined): p is TenantRebuildProgress => !!p && 'tenant' in p;
  const byName = new Map(definitions.map((d) => [d.name, d]));

  const launch = async (def: ProjectionDefinition, version: number): Promise<RunningProjection> => {
    const p = def.make(version);
    if (!opts.local(def.name)) return watchProjection(pool, p, bus ? 'kafka' : 'store');
    if (bus) return startKafkaProjection(bus, pool, p, opts.runner);
    return startProjection(store, pool, p, opts.runner);
  };

  for (const def of definitions) {
    const version = def.rebuildable === true ? await activeVersion(pool, def.name, def.defaultVersion) : def.defaultVersion;
    versions.set(def.name, version);
    // A crash during a switch may have left some tenants' views on another version.
    if (def.views && opts.local(def.name)) {
      const moved = await def.views.switchTo(pool, version, { waitMs: 0 });
      if (moved) log('warn', 'projection views realigned to the active version', { name: def.name, version, tenants: moved });
    }
    running.set(def.name, await launch(def, version));
  }

  async function lag(positionStr: string): Promise<number | null> {
    const schema = (store as { schema?: string }).schema;
    if (store.kind !== 'postgres' || !schema) return null;
    const gp = positionStr ? Number(positionStr.split('-')[1] ?? 0) : 0;
    const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.events WHERE global_position > $1`, [gp]);
    return Number(r.rows[0]?.n ?? 0);
  }

  // Lag history for the operator page: one sample a minute, the last hour kept in memory.
  const history: { at: string; lag: Record<string, number | null> }[] = [];
  const sample = async () => {
    try {
      const items = await api.list();
      history.push({ at: new Date().toISOString(), lag: Object.fromEntries(items.map((i) => [i.name, i.lag_events])) });
      while (history.length > 60) history.shift();
    } catch {
      // sampling is best effort
    }
  };
  const sampler = setInterval(() => void sample(), 60_000);
  sampler.unref();

  const api = {
    history: () => history.slice(),
    sample,
    get: (name: string) => running.get(name),
    /** Live handles by name, for read-your-writes waits. */
    handles(): Record<string, RunningProjection> {
      const out: Record<string, RunningProjection> = {};
      for (const def of definitions) {
        out[def.name] = {
          status: () => running.get(def.name)!.status(),
          waitFor: (p, t, tenant) => running.get(def.name)!.waitFor(p, t, tenant),
          stop: async () => undefined,
        };
      }
      return out;
    },
    version: (name: string) => versions.get(name),
    async list(): Promise<ProjectionInfo[]> {
      const out: ProjectionInfo[] = [];
      for (const def of definitions) {
        const s = running.get(def.name)!.status();
        const lagEvents = s.source === 'store' ? await lag(s.position) : null;
        out.push({
          name: def.name,
          version: versions.get(def.name)!,
          source: s.source,
          // A tenant's rebuild leaves the projection live for everyone else.
          state: rebuilds.get(def.name)?.state === 'rebuilding' && !isTenantRebuild(rebuilds.get(def.name)) ? 'rebuilding' : s.state,
          error: s.error,
          position: s.position,
          lag_events: lagEvents,
          lag_seconds: lagEvents === 0 ? 0 : s.lastEventAt ? Math.max(0, (Date.now() - Date.parse(s.lastEventAt)) / 1000) : null,
          rebuildable: def.rebuildable === true || (def.rebuildable === 'rows' && wholeRowsRebuildable(def.name)),
          tenant_rebuildable: def.rebuildable !== false && tenantRebuildable(def.name),
          rebuild: rebuilds.get(def.name) ?? null,
        });
      }
      return out;
    },
    /** Starts a rebuild in the background; resolves with its first progress record. */
    async rebuild(name: string, onProgress?: (p: RebuildProgress) => void): Promise<{ progress: RebuildProgress; done: Promise<RebuildProgress> }> {
      const def = api.rebuildable(name);
      if (def.rebuildable === 'rows') return api.rebuildRows(def, null, onProgress);
      // Its views must be switched by the process that applies the new version live.
      if (def.views && !opts.local(name)) throw new ConflictError(`projection ${name} runs in another process: rebuild it where its projector runs`);
      if (busy.has(name)) throw new ConflictError(`projection ${name} is already rebuilding`);
      busy.add(name);
      const current = versions.get(name)!;
      let next: number;
      try {
        const r = await pool.query<{ v: number | null }>('SELECT greatest(active_version, coalesce(building_version, 0)) AS v FROM platform.projection_versions WHERE name = $1', [name]);
        next = Math.max(current, r.rows[0]?.v ?? current) + 1;
        await pool.query(`UPDATE platform.projection_versions SET building_version = $2, state = 'rebuilding', error = NULL, updated_at = now() WHERE name = $1`, [name, next]);
      } catch (err) {
        busy.delete(name);
        throw err;
      }
      const progress: RebuildProgress = { name, version: next, done: 0, total: null, eventsPerSecond: 0, etaSeconds: null, state: 'rebuilding', error: null };
      rebuilds.set(name, progress);
      const done = (async () => {
        try {
          await def.views?.prepare(pool, next);
          const projection = def.make(next);
          const built = await rebuild(store, pool, projection, {
            log,
            onProgress: (p) => {
              Object.assign(progress, p);
              onProgress?.(progress);
            },
          });
          // Caught up with the store: continue live from the rebuild's checkpoints, then switch.
          const replacement = await launch(def, next);
          try {
            const head = await store.headPosition();
            // From Kafka a version receives only its own topics, so the store's head may be an
            // event it is never delivered: it has caught up when each (category, tenant) it consumes
            // is checkpointed at or past the store's last event of that key.
            const caughtUp = bus ? await keyedCaughtUp(store, pool, projection, built.position, head, 60_000) : await replacement.waitFor(head, 60_000);
            if (!caughtUp) throw new Error(`version ${next} did not catch up with the event store within 60 s; reads stay on version ${current}`);
            if (def.views) {
              try {
                await def.views.switchTo(pool, next);
              } catch (err) {
                // Tenants already switched go back to the live version, which kept running.
                await def.views.switchTo(pool, current, { waitMs: 0 }).catch((e) => log('error', 'could not switch views back', { name, error: (e as Error).message }));
                throw err;
              }
            }
          } catch (err) {
            await replacement.stop().catch(() => undefined);
            throw err;
          }
          await pool.query(`UPDATE platform.projection_versions SET active_version = $2, building_version = NULL, state = 'live', updated_at = now() WHERE name = $1`, [name, next]);
          const old = running.get(name)!;
          running.set(name, replacement);
          versions.set(name, next);
          await old.stop();
          if (def.views) {
            // Tenants provisioned during the switch (their views were made on the old version).
            await def.views.switchTo(pool, next).catch((err) => log('error', 'late tenants not switched (realigned at the next start)', { name, error: (err as Error).message }));
            await def.views.retire(pool, current).catch((err) => log('warn', 'old version not dropped', { name, error: (err as Error).message }));
          }
          progress.state = 'switched';
          log('info', 'projection rebuilt and switched', { name, version: next, events: progress.done });
        } catch (err) {
          progress.state = 'failed';
          progress.error = (err as Error).message;
          await pool.query(`UPDATE platform.projection_versions SET building_version = NULL, state = 'failed', error = $2, updated_at = now() WHERE name = $1`, [name, progress.error]).catch(() => undefined);
          log('error', 'projection rebuild failed', { name, error: progress.error });
        }
        busy.delete(name);
        onProgress?.(progress);
        return progress;
      })();
      return { progress, done };
    },
    /** The definition of a projection that can be rebuilt online (whole, or per tenant); 404 unknown, 409 not rebuildable. */
    rebuildable(name: string, perTenant = false): ProjectionDefinition {
      const def = byName.get(name);
      if (!def) throw new NotFoundError('Projection');
      if (!def.rebuildable || (perTenant && !tenantRebuildable(name)) || (def.rebuildable === 'rows' && !perTenant && !wholeRowsRebuildable(name))) {
        throw new ConflictError(`projection ${name} is not rebuildable online`);
      }
      return def;
    },
    /**
     * Rebuilds one tenant's rows of a live projection from position 0 of the event store into a
     * scratch copy and swaps them in (projections/tenantRebuild.ts); other tenants are not touched.
     * Starts in the background; resolves with its first progress record.
     */
    async rebuildTenant(name: string, tenant: { id: string; slug: string }, onProgress?: (p: TenantRebuildProgress) => void): Promise<{ progress: TenantRebuildProgress; done: Promise<TenantRebuildProgress> }> {
      const def = api.rebuildable(name, true);
      return api.rebuildRows(def, tenant, onProgress as (p: RebuildProgress) => void) as Promise<{ progress: TenantRebuildProgress; done: Promise<TenantRebuildProgress> }>;
    },
    /** Rebuilds one tenant's rows, or (`tenant` null) every tenant's of a 'rows' projection, in place. */
    async rebuildRows(def: ProjectionDefinition, tenant: { id: string; slug: string } | null, onProgress?: (p: RebuildProgress) => void): Promise<{ progress: RebuildProgress; done: Promise<RebuildProgress> }> {
      const name = def.name;
      if (busy.has(name)) throw new ConflictError(`projection ${name} is already rebuilding`);
      busy.add(name);
      const version = versions.get(name)!;
      const progress: RebuildProgress | TenantRebuildProgress = {
        name,
        version,
        ...(tenant ? { tenant: tenant.slug } : { inPlace: true }),
        done: 0,
        total: null,
        eventsPerSecond: 0,
        etaSeconds: null,
        state: 'rebuilding',
        error: null,
      };
      rebuilds.set(name, progress);
      const done = (async () => {
        try {
          await rebuildTenant({
            store,
            pool,
            make: def.make,
            name,
            liveVersion: version,
            source: running.get(name)!.status().source,
            tenantId: tenant?.id ?? null,
            slug: tenant?.slug ?? null,
            log,
            onProgress: (p) => {
              Object.assign(progress, p);
              // The swap is done, not yet what follows from it: report 'switched' at the end.
              if (progress.state === 'switched') progress.state = 'rebuilding';
              onProgress?.(progress);
            },
          });
          await def.afterRowsRebuild?.(tenant?.id ?? null);
          progress.state = 'switched';
        } catch (err) {
          progress.state = 'failed';
          progress.error = (err as Error).message;
          log('error', tenant ? 'tenant rebuild failed' : 'rebuild failed', { name, tenantId: tenant?.id, error: progress.error });
        }
        busy.delete(name);
        onProgress?.(progress);
        return progress;
      })();
      return { progress, done };
    },
    async stop() {
      clearInterval(sampler);
      for (const p of running.values()) await p.stop();
    },
  };
  void sample();
  return api;
}

export type Projections = Awaited<ReturnType<typeof startProjections>>;
