/**
 * The EventStoreDB adapter against a real server: EVENTSTORE_URL when given (e.g.
 * `esdb://127.0.0.1:2113?tls=false`), else a throwaway container when a Docker engine answers,
 * else the suite is reported skipped by name with the reason (test/support/skip.ts).
 *
 * Jest registers suites synchronously, so the Docker probe is synchronous too: no socket means
 * no Docker (instant); a socket or DOCKER_HOST gets a /_ping with a 2 s budget in a child process.
 * testcontainers and the gRPC client are loaded only when the suite really runs.
 */
import { existsSync } from 'node:fs';
import { dockerAnswers } from '../support/servers';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describeSkipped } from '../support/skip';
import { eventStoreContract } from './eventStore.contract';

const IMAGE = process.env.EVENTSTORE_IMAGE ?? 'eventstore/eventstore:24.10';
const SUITE = 'EventStoreDB event store contract';

/** Where a Docker engine could be: DOCKER_HOST, or the usual Unix sockets (rootful, rootless, Desktop). */
function dockerEndpoint(): { socketPath: string } | { url: string } | null {
  const host = process.env.DOCKER_HOST;
  if (host?.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  if (host?.startsWith('tcp://')) return { url: `${process.env.DOCKER_TLS_VERIFY ? 'https' : 'http'}://${host.slice('tcp://'.length)}` };
  const candidates = [
    '/var/run/docker.sock',
    process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'docker.sock') : null,
    join(homedir(), '.docker', 'run', 'docker.sock'),
  ];
  const socketPath = candidates.find((p): p is string => p !== null && existsSync(p));
  return socketPath ? { socketPath } : null;
}


const explicitUrl = process.env.EVENTSTORE_URL;

if (!explicitUrl && !dockerAnswers()) {
  describeSkipped(SUITE, 'no EVENTSTORE_URL and no Docker engine answers');
} else {
  eventStoreContract('eventstoredb', async () => {
    let url = explicitUrl;
    let stopContainer: (() => Promise<unknown>) | null = null;
    if (!url) {
      const { GenericContainer, Wait } = await import('testcontainers');
      const container = await new GenericContainer(IMAGE)
        .withEnvironment({
          EVENTSTORE_INSECURE: 'true',
          EVENTSTORE_CLUSTER_SIZE: '1',
          EVENTSTORE_MEM_DB: 'true',
          EVENTSTORE_RUN_PROJECTIONS: 'None',
          EVENTSTORE_START_STANDARD_PROJECTIONS: 'false',
          EVENTSTORE_TELEMETRY_OPTOUT: 'true',
        })
        .withExposedPorts(2113)
        .withWaitStrategy(Wait.forHttp('/health/live', 2113).forStatusCode(204))
        .withStartupTimeout(180_000)
        .start();
      stopContainer = () => container.stop();
      url = `esdb://${container.getHost()}:${container.getMappedPort(2113)}?tls=false`;
    }
    const { createEsdbEventStore } = await import('../../infra/eventstore/esdb');
    const store = await createEsdbEventStore(url);
    return {
      store,
      async cleanup() {
        await store.close();
        await stopContainer?.();
      },
    };
  });
}
