import { findPortHolder, PortInUseError } from '../infra/net/portHolder';
import { ConfigError, loadEnv } from './config';
import { limitHeapGrowth } from './core/heap';
import { ALL_ROLES, type Product, PROJECTION_NAMES, type Roles, startProduct } from './product';

/**
 * `tsx services/main.ts [all | gateway | relay | projector [name ...] | indexer]`
 * (npm start, start:gateway, start:relay, start:projector -- <name|all>).
 */
function rolesFrom(argv: string[]): Roles {
  const [role = 'all', ...rest] = argv;
  switch (role) {
    case 'all':
      return ALL_ROLES;
    case 'gateway':
      return { gateway: true, relay: false, projectors: [], indexer: false };
    case 'relay':
      return { gateway: false, relay: true, projectors: [], indexer: false };
    case 'indexer':
      return { gateway: false, relay: false, projectors: [], indexer: true };
    case 'projector': {
      const names = rest.length === 0 || rest.includes('all') ? 'all' : rest;
      if (names !== 'all') {
        for (const n of names) if (!(PROJECTION_NAMES as readonly string[]).includes(n) && n !== 'indexer') throw new Error(`unknown projection "${n}"; known: ${PROJECTION_NAMES.join(', ')}, indexer`);
      }
      // The indexing workers are the vector projection's writers: they run with `all` or `indexer`.
      return { gateway: false, relay: false, projectors: names === 'all' ? 'all' : names.filter((n) => n !== 'indexer'), indexer: names === 'all' || names.includes('indexer') };
    }
    default:
      throw new Error(`unknown role "${role}"; use all, gateway, relay, projector [names], indexer`);
  }
}

async function main(): Promise<void> {
  let env;
  try {
    env = loadEnv();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tenant-rag refuses to start: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  limitHeapGrowth(env.heapGrowthPercent);
  const roles = rolesFrom(process.argv.slice(2));
  // A signal while starting: stop what has started once it has, then exit; a second one exits now
  // (the watchdog stops an embedded PostgreSQL already started).
  let early: string | null = null;
  const onEarly = (signal: string) => {
    if (early) process.exit(1);
    early = signal;
    process.stdout.write(`\n${signal} while starting: stopping once started (again to exit now)\n`);
  };
  process.on('SIGINT', onEarly);
  process.on('SIGTERM', onEarly);
  const product = await startProduct(env, { roles });
  if (roles.gateway) {
    let server;
    try {
      server = await product.listen(env.port, env.host);
    } catch (err) {
      // Never leave the embedded PostgreSQL behind because the HTTP port was taken.
      await product.shutdown({ timeoutMs: Math.min(env.shutdownTimeoutMs, 5000) });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new PortInUseError(env.port, findPortHolder(env.port), 'the HTTP server cannot start (PORT)', 'Stop that process or set PORT to a free port');
      throw err;
    }
    const addr = server.address();
    const where = typeof addr === 'object' && addr ? `http://${addr.address}:${addr.port}` : String(addr);
    if (env.adminTokenGenerated) {
      // Printed once, to the terminal only (not the JSON log stream).
      process.stdout.write(`\n  ADMIN_TOKEN was not set; operator token for this run:\n\n    ${env.config.adminToken}\n\n`);
    }
    process.stdout.write(`  tenant-rag listening on ${where}  (API docs: ${where}/docs)\n\n`);
  } else {
    process.stdout.write(`  tenant-rag ${process.argv.slice(2).join(' ')} running\n`);
  }

  process.off('SIGINT', onEarly);
  process.off('SIGTERM', onEarly);
  handleSignals(product, env.shutdownTimeoutMs);
  if (early) process.kill(process.pid, early);
}

/**
 * First SIGTERM/SIGINT: graceful shutdown within `timeoutMs`, exit 0 when every step finished, 1
 * otherwise (what was pending is logged). Past the deadline: every connection dropped, PostgreSQL
 * stopped anyway, exit 1. A second signal: PostgreSQL asked to stop, exit 1 at once.
 */
function handleSignals(product: Product, timeoutMs: number): void {
  const line = (level: number, msg: string, extra: Record<string, unknown> = {}) =>
    process.stderr.write(`${JSON.stringify({ level, time: Date.now(), service: 'tenant-rag', msg, ...extra })}\n`);
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) {
      line(40, 'second signal: exiting now', { signal });
      product.stopNow();
      process.exit(1);
    }
    stopping = true;
    process.stdout.write(`\n${signal}: draining and stopping (up to ${timeoutMs} ms)...\n`);
    const deadline = setTimeout(() => {
      line(50, 'shutdown timed out: closing what remains', { timeoutMs, pending: product.pendingSteps() });
      void product.forceStop().finally(() => process.exit(1));
    }, timeoutMs);
    deadline.unref();
    product.shutdown({ timeoutMs }).then(
      (report) => {
        line(report.clean ? 30 : 40, report.clean ? 'stopped' : 'stopped with steps left pending', { ms: report.ms, pending: report.pending, steps: report.steps });
        process.exit(report.clean ? 0 : 1);
      },
      (err) => {
        line(50, 'shutdown failed', { error: (err as Error)?.stack ?? String(err) });
        void product.forceStop().finally(() => process.exit(1));
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

// A background failure (a cache refresh, a best-effort cleanup) must never take the API down.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`${JSON.stringify({ level: 50, msg: 'unhandled rejection', error: (reason as Error)?.stack ?? String(reason) })}\n`);
});

main().catch((err) => {
  // A taken port is an operator's problem, not a bug: the message (holder pid and command) suffices.
  const text = err instanceof PortInUseError ? err.message : ((err as Error)?.stack ?? String(err));
  process.stderr.write(`tenant-rag failed to start: ${text}\n`);
  process.exit(1);
});
