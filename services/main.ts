import { ConfigError, loadEnv } from './config';
import { ALL_ROLES, PROJECTION_NAMES, type Roles, startProduct } from './product';

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
  const roles = rolesFrom(process.argv.slice(2));
  const product = await startProduct(env, { roles });
  if (roles.gateway) {
    const server = await product.listen(env.port, env.host);
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

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${signal}: draining and stopping...\n`);
    const force = setTimeout(() => process.exit(1), 20_000);
    force.unref();
    await product.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

// A background failure (a cache refresh, a best-effort cleanup) must never take the API down.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`${JSON.stringify({ level: 50, msg: 'unhandled rejection', error: (reason as Error)?.stack ?? String(reason) })}\n`);
});

main().catch((err) => {
  process.stderr.write(`tenant-rag failed to start: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
