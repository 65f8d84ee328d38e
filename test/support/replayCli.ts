import { execFile } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Product } from '../../services/product';
import { ADMIN } from './product';

/** Runs `npm run replay -- <args>` (services/admin/replay.ts) against `product` listening on a free port, as an operator would. */
export async function runReplay(product: Product, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  const server = await product.listen(0, '127.0.0.1');
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const tsx = join(__dirname, '../../node_modules/.bin/tsx');
    return await new Promise((resolve) => {
      execFile(tsx, [join(__dirname, '../../services/admin/replay.ts'), ...args, '--url', url], { env: { ...process.env, ADMIN_TOKEN: ADMIN }, timeout: timeoutMs }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}
