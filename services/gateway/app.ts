import { randomUUID } from 'node:crypto';
import express, { type RequestHandler, type Response } from 'express';
import passport from 'passport';
import client from 'prom-client';
import swaggerUi from 'swagger-ui-express';
import { redisKey } from '../../contracts/naming';
import { TooManyRequestsError, ValidationError } from '../core/errors';
import { containsNul } from './validation';
import { adminApi, usageApi } from '../admin/api';
import { adminPage } from '../admin/page';
import { auditApi } from '../audit/api';
import { documentsApi } from '../documents/api';
import { queriesApi } from '../queries/api';
import { tenantsApi } from '../tenants/api';
import { createAuthenticator } from './auth';
import type { AppDeps } from './context';
import { idempotency } from './idempotency';
import { openApiDocument } from './openapi';
import { errorHandler, notFoundRoute, problemBody } from './problem';

export const metrics = {
  registry: new client.Registry(),
};
const httpDuration = new client.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request latency by route and status',
  labelNames: ['method', 'route', 'status'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
  registers: [metrics.registry],
});
client.collectDefaultMetrics({ register: metrics.registry });
export const eventsAppended = new client.Counter({
  name: 'tenant_rag_events_appended_total',
  help: 'Events appended to the event store by this process, by event type',
  labelNames: ['type'],
  registers: [metrics.registry],
});

/** Per-tenant and per-token token buckets, with RateLimit-* headers on every answer. */
function rateLimit(deps: AppDeps): RequestHandler {
  return async (req, res, next) => {
    try {
      const p = req.principal!;
      const tenantLimit = req.tenantLimit ?? deps.config.defaultRateLimit;
      const tenantDecision = await deps.limiter.take(redisKey(p.tenantId, 'rl', 'tenant'), tenantLimit);
      let decision = tenantDecision;
      if (tenantDecision.allowed && p.tokenId) {
        decision = await deps.limiter.take(redisKey(p.tenantId, 'rl', 'token', p.tokenId), deps.config.tokenRateLimit);
      }
      res.setHeader('RateLimit-Limit', String(decision.limit));
      res.setHeader('RateLimit-Remaining', String(Math.max(0, decision.remaining)));
      res.setHeader('RateLimit-Reset', String(decision.resetSeconds));
      if (!decision.allowed) throw new TooManyRequestsError('Rate limit exceeded for this tenant or token', decision.retryAfterSeconds);
      next();
    } catch (err) {
      next(err);
    }
  };
}

/**
 * Graceful shutdown, HTTP side (the server itself stops accepting in product.stop): once draining,
 * every answer carries `Connection: close`, so a keep-alive client gets the answer to the request
 * it sent and then a closed connection; open event streams are ended with a final `error` event
 * (503, retry elsewhere) instead of being cut mid-line.
 */
export interface Drain {
  begin(): void;
  /** Ends the open text/event-stream answers; returns how many. */
  endStreams(): number;
  /** Answers not finished yet (streams included). */
  inFlight(): { requests: number; streams: number };
}

const isStream = (res: Response) => res.headersSent && !res.writableEnded && String(res.getHeader('content-type') ?? '').startsWith('text/event-stream');

function createDrain() {
  const open = new Set<Response>();
  let draining = false;
  const track: RequestHandler = (_req, res, next) => {
    if (draining) res.setHeader('Connection', 'close');
    open.add(res);
    res.on('close', () => open.delete(res));
    next();
  };
  const drain: Drain = {
    begin() {
      draining = true;
    },
    endStreams() {
      let n = 0;
      for (const res of open) {
        if (!isStream(res)) continue;
        const body = problemBody(503, 'Server shutting down', 'the server is stopping; ask again (another instance or after the restart)', res.req.originalUrl);
        // The route may still write (its generation ends on the close): writes after the end are
        // dropped, never an unhandled 'error' event.
        res.on('error', () => undefined);
        res.end(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
        n++;
      }
      return n;
    },
    inFlight() {
      let streams = 0;
      for (const res of open) if (isStream(res)) streams++;
      return { requests: open.size, streams };
    },
  };
  return { track, drain };
}

export function createApp(deps: AppDeps) {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.set('query parser', 'simple');
  const { track, drain } = createDrain();
  app.use(track);
  app.use(passport.initialize());

  // Correlation id and access log.
  app.use((req, res, next) => {
    const incoming = req.headers['x-correlation-id'];
    req.correlationId = typeof incoming === 'string' && /^[A-Za-z0-9._:-]{1,100}$/.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Correlation-Id', req.correlationId);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = (req.route?.path as string | undefined) ?? 'unmatched';
      httpDuration.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
      if (res.statusCode >= 500) deps.log('error', 'request failed', { method: req.method, path: req.path, status: res.statusCode, correlationId: req.correlationId, tenantId: req.principal?.tenantId });
    });
    next();
  });

  const auth = createAuthenticator(deps.pool, deps.config.jwtSecret);
  const onTenantChanged = deps.onTenantChanged;
  deps.onTenantChanged = (tenantId) => {
    auth.invalidateTenant(tenantId);
    onTenantChanged(tenantId);
  };

  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/ready', async (_req, res) => {
    const checks = await deps.readiness();
    const ok = Object.values(checks).every((c) => c.ok);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not_ready', checks, warnings: deps.embedderDegraded ? [deps.embedderDegraded] : [] });
  });
  // Projection progress is read when scraped, so the figures are never stale.
  const lag = new client.Gauge({
    name: 'tenant_rag_projection_lag_events',
    help: 'Events in the store not yet applied by the projection (embedded store only)',
    labelNames: ['projection', 'version'],
    registers: [],
    async collect() {
      for (const p of await deps.manager.list()) if (p.lag_events !== null) this.set({ projection: p.name, version: String(p.version) }, p.lag_events);
    },
  });
  const lagSeconds = new client.Gauge({
    name: 'tenant_rag_projection_lag_seconds',
    help: 'Seconds since the last event the projection applied, while it is behind',
    labelNames: ['projection', 'version'],
    registers: [],
    async collect() {
      for (const p of await deps.manager.list()) if (p.lag_seconds !== null) this.set({ projection: p.name, version: String(p.version) }, p.lag_seconds);
    },
  });
  const appRegistry = client.Registry.merge([metrics.registry, new client.Registry()]);
  appRegistry.registerMetric(lag);
  appRegistry.registerMetric(lagSeconds);
  app.get('/metrics', async (_req, res) => {
    res.type(appRegistry.contentType).send(await appRegistry.metrics());
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });
  app.use('/docs', swaggerUi.serve, swaggerUi.setup(undefined, { swaggerOptions: { url: '/openapi.json' }, customSiteTitle: 'tenant-rag API' }));

  const json = express.json({ limit: '64kb', strict: true });

  // Public + operator routes (their own credentials), then every tenant route behind auth.
  // Uploads parse their (up to 16 MB) JSON body in their route, after authentication.
  app.use((req, res, next) => (req.method === 'POST' && req.path === '/v1/documents' ? next() : json(req, res, next)));
  app.use((req, _res, next) => {
    if (containsNul(req.body) || containsNul(req.query)) return next(new ValidationError('NUL characters are not allowed in requests'));
    next();
  });
  const tenants = tenantsApi(deps);
  app.use(tenants.operatorAndLogin);
  app.use(adminApi(deps));
  app.use(adminPage(deps));

  const tenantRoutes = express.Router();
  tenantRoutes.use('/v1', auth.authenticate, rateLimit(deps), idempotency(deps.idempotency));
  tenantRoutes.use(tenants.tenant);
  tenantRoutes.use(documentsApi(deps));
  tenantRoutes.use(queriesApi(deps));
  tenantRoutes.use(auditApi(deps));
  tenantRoutes.use(usageApi(deps));
  app.use(tenantRoutes);

  app.use(notFoundRoute);
  app.use(errorHandler((err, req) => deps.log('error', 'unhandled error', { error: (err as Error)?.stack ?? String(err), path: req.path, correlationId: req.correlationId })));
  return Object.assign(app, { drain });
}
