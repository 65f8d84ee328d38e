import { execFile } from 'node:child_process';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ADMIN } from './product';

/** Runs `npm run replay -- <args>` (services/admin/replay.ts) against `server`, as an operator would. */
export function runReplay(server: Server, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const tsx = join(__dirname, '../../node_modules/.bin/tsx');
  return new Promise((resolve) => {
    execFile(tsx, [join(__dirname, '../../services/admin/replay.ts'), ...args, '--url', url], { env: { ...process.env, ADMIN_TOKEN: ADMIN }, timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
