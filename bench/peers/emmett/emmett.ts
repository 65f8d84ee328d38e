/**
 * Peer for the event-append figures: Emmett's PostgreSQL event store
 * (`@event-driven-io/emmett-postgresql`), installed ONLY here, outside the product's dependencies:
 *
 *   npm --prefix bench/peers/emmett install
 *
 * Loaded with a dynamic import of the installed files so that the product's typecheck and a clone
 * without this folder's node_modules do not depend on it; when it is missing or fails to load,
 * `openEmmett` says why and the table reports the peer as unavailable.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface PeerEvent {
  type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

export interface PeerStore {
  name: string;
  /** Appends; `expected` null = the stream must be new. Returns the next expected version. */
  append(stream: string, events: PeerEvent[], expected: bigint | null): Promise<bigint>;
  close(): Promise<void>;
}

const PKG = '@event-driven-io/emmett-postgresql';

export async function openEmmett(url: string, poolMax: number): Promise<PeerStore | { unavailable: string }> {
  const pkgDir = join(__dirname, 'node_modules', PKG);
  if (!existsSync(join(pkgDir, 'package.json'))) {
    return { unavailable: `${PKG} is not installed (run \`npm --prefix bench/peers/emmett install\`)` };
  }
  const [major] = process.versions.node.split('.').map(Number);
  let version = '?';
  try {
    version = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
    const req = createRequire(join(__dirname, 'package.json'));
    // Emmett's own pg (its peer dependency), so the pool is the class it expects.
    const pg = req('pg') as typeof import('pg');
    const mod = (await import(pathToFileURL(join(pkgDir, 'dist', 'index.js')).href)) as {
      getPostgreSQLEventStore(url: string, options?: unknown): {
        appendToStream(stream: string, events: unknown[], options?: { expectedStreamVersion?: bigint }): Promise<{ nextExpectedStreamVersion: bigint }>;
        schema: { migrate(): Promise<unknown> };
        close(): Promise<void>;
      };
    };
    const pool = new pg.Pool({ connectionString: url, max: poolMax, application_name: 'bench emmett' });
    // Idle clients see their connection end when the scratch database is dropped: not an error.
    pool.on('error', () => undefined);
    const store = mod.getPostgreSQLEventStore(url, { connectionOptions: { pooled: true, pool } });
    await store.schema.migrate();
    return {
      name: `Emmett ${version} (${PKG}, Node ${major})`,
      async append(stream, events, expected) {
        const r = await store.appendToStream(stream, events, expected === null ? undefined : { expectedStreamVersion: expected });
        return r.nextExpectedStreamVersion;
      },
      async close() {
        await store.close().catch(() => undefined);
        await pool.end().catch(() => undefined);
      },
    };
  } catch (err) {
    return { unavailable: `${PKG}@${version} failed to load or migrate on Node ${process.versions.node}: ${(err as Error).message.split('\n')[0]}` };
  }
}
