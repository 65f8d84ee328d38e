import { createServer, type Server } from 'node:net';
import { assertPortFree, findPortHolder, PortInUseError } from './portHolder';

const listen = (s: Server) => new Promise<number>((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)));

describe('the process holding a port', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer();
    port = await listen(server);
  });
  afterAll(() => new Promise((r) => server.close(r)));

  it('is found for a listening socket: this process, with its command line', () => {
    const holder = findPortHolder(port);
    expect(holder?.pid).toBe(process.pid);
    expect(holder?.command).toContain(process.argv0.split('/').pop());
  });

  it('is named in the error of a start that finds the port taken', async () => {
    const err = await assertPortFree(port, '127.0.0.1', 'test server cannot start').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortInUseError);
    expect((err as Error).message).toBe(`test server cannot start: port ${port} on 127.0.0.1 is already in use by process ${process.pid} (${findPortHolder(port)!.command})`);
  });

  it('a free port passes, and nothing is found listening on it', async () => {
    const probe = createServer();
    const free = await listen(probe);
    await new Promise((r) => probe.close(r));
    await expect(assertPortFree(free, '127.0.0.1', 'x')).resolves.toBeUndefined();
    expect(findPortHolder(free)).toBeNull();
  });
});
