/**
 * The product as `npm start` wires it (services/product.ts), run as a child of bench/run.ts and
 * driven over IPC: it reports its port when listening, answers `mem` with process.memoryUsage(),
 * turns activity recording off and on for one A/B figure (`activity-off`/`activity-on`) and stops on `stop` or when the parent goes away. Configuration comes from the environment
 * (services/config.ts loadEnv), set by bench/harness.ts startProductProcess.
 */
import pino from 'pino';
import { loadEnv } from '../services/config';
import { startProduct } from '../services/product';

async function main(): Promise<void> {
  if (!process.send) throw new Error('bench/productServer.ts runs as a child of bench/run.ts (IPC channel missing)');
  const env = loadEnv(process.env);
  const product = await startProduct(env, { logger: pino({ level: env.logLevel }, pino.destination(2)) });
  const server = await product.listen(env.port, env.host);
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const ready = await product.deps.readiness();

  let stopping = false;
  let recordActivity: typeof product.deps.activity.record | undefined;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    await product.stop().catch(() => undefined);
    process.exit(code);
  };
  process.on('message', (m: { cmd: string; id: number }) => {
    if (m.cmd === 'mem' || m.cmd === 'mem-gc') {
      // `mem-gc` collects first (the child runs with --expose-gc), so retained memory is comparable.
      const gc = (globalThis as { gc?: () => void }).gc;
      if (m.cmd === 'mem-gc' && gc) gc();
      process.send!({ type: 'mem', id: m.id, mem: process.memoryUsage() });
    }
    else if (m.cmd === 'activity-off' || m.cmd === 'activity-on') {
      // The A/B of the activity-recording figure (bench/search.ts): recording off swaps the
      // recorder's `record` for a no-op in this bench child only; the product has no such switch.
      const activity = product.deps.activity as { record: typeof product.deps.activity.record };
      recordActivity ??= activity.record.bind(product.deps.activity);
      activity.record = m.cmd === 'activity-on' ? recordActivity : () => undefined;
      process.send!({ type: 'activity', id: m.id, on: m.cmd === 'activity-on' });
    }
    else if (m.cmd === 'stop') void stop(0);
  });
  process.on('disconnect', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  process.on('SIGINT', () => void stop(0));
  process.send({ type: 'ready', port, embedderId: product.deps.embedder.id, ready });
}

main().catch((err) => {
  process.stderr.write(`bench product failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
