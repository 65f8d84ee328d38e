import type { Request } from 'express';
import type { Pool } from 'pg';
import type { ContentStore } from '../../infra/postgres/contentStore';
import type { Indexer } from '../../projections/index/indexer';
import type { ServingEmbedders } from '../../projections/index/servingEmbedders';
import type { Projections } from '../../projections/manager';
import type { RunningProjection } from '../../projections/runner';
import type { CommandContext } from '../core/commandHandler';
import type { EventStore, GlobalPosition } from '../core/eventStore';
import { UnauthorizedError } from '../core/errors';
import type { Answerer, Embedder } from '../core/ports';
import type { KnowledgeIndex } from '../search/knowledgeIndex';
import type { Principal } from './auth';
import type { ActivityRecorder } from '../queries/activity';
import type { IdempotencyStore } from './idempotency';
import type { RateLimiter } from './rateLimit';

export interface Config {
  production: boolean;
  jwtSecret: string;
  jwtTtlSeconds: number;
  adminToken: string;
  maxUploadBytes: number;
  defaultQuotas: { maxDocuments: number; maxBytes: number };
  defaultRateLimit: { perSecond: number; burst: number };
  tokenRateLimit: { perSecond: number; burst: number };
  /** How long a command waits for its read model before answering (read-your-writes). */
  consistencyWaitMs: number;
}

/** Everything a route may use, wired once in the composition root (services/main.ts). */
export interface AppDeps {
  config: Config;
  store: EventStore;
  pool: Pool;
  content: ContentStore;
  index: KnowledgeIndex;
  embedder: Embedder;
  /** Each tenant's serving embedder (differs from `embedder` during a re-embedding). */
  serving?: ServingEmbedders;
  embedderDegraded: string | null;
  answerer: Answerer;
  limiter: RateLimiter;
  idempotency: IdempotencyStore;
  activity: ActivityRecorder;
  projections: Record<string, RunningProjection>;
  manager: Projections;
  /** The indexing workers, when this process runs them. */
  indexer: Indexer | null;
  now: () => Date;
  readiness: () => Promise<Record<string, { ok: boolean; adapter: string; detail?: string }>>;
  onTenantChanged: (tenantId: string) => void;
  log: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;
}

export function principalOf(req: Request): Principal {
  if (!req.principal) throw new UnauthorizedError();
  return req.principal;
}

export function commandContext(req: Request, deps: AppDeps, tenantId?: string, actor?: string): CommandContext {
  return {
    tenantId: tenantId ?? principalOf(req).tenantId,
    actor: actor ?? principalOf(req).actor,
    correlationId: req.correlationId ?? 'none',
    causationId: null,
    now: deps.now(),
  };
}

/** Wait (bounded) until the named projections have processed `position`. */
export async function waitForProjections(deps: AppDeps, position: GlobalPosition | null, names: string[], tenantId?: string): Promise<boolean> {
  if (!position) return true;
  const timeoutMs = deps.config.consistencyWaitMs;
  const results = await Promise.all(names.map((n) => deps.projections[n]?.waitFor(position, timeoutMs, tenantId) ?? Promise.resolve(true)));
  return results.every(Boolean);
}
