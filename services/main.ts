import { ConfigError, loadEnv } from './config';
import { startProduct } from './product';

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
  const product = await startProduct(env);
  const server = await product.listen(env.port, env.host);
  const addr = server.address();
  const where = typeof addr === 'object' && addr ? `http://${addr.address}:${addr.port}` : String(addr);
  if (env.adminTokenGenerated) {
    // Printed once, to the terminal only (not the JSON log stream).
    process.stdout.write(`\n  ADMIN_TOKEN was not set; operator token for this run:\n\n    ${env.config.adminToken}\n\n`);
  }
  process.stdout.write(`  tenant-rag listening on ${where}  (API docs: ${where}/docs)\n\n`);

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

main().catch((err) => {
  process.stderr.write(`tenant-rag failed to start: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
