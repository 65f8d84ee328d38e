/**
 * Redis adapters (rate limiter, idempotency store, connection) against a real Redis.
 *
 * REDIS_URL when set (CI: infra/scripts/up.sh), else a container when a Docker engine answers,
 * else the suite is reported skipped with the reason. Keys use random tenant ids, so reruns and
 * parallel runs never meet; everything a test writes is removed in afterAll.
 */
import { randomUUID } from 'node:crypto';
import { dockerAnswers } from '../../test/support/servers';
import { createServer } from 'node:net';
import type Redis from 'ioredis';
import { redisKey } from '../../contracts/naming';
import { createMemoryRateLimiter, type RateDecision } from '../../services/gateway/rateLimit';
import { describeSkipped } from '../../test/support/skip';
import { connectRedis } from './client';
import { createRedisIdempotencyStore } from './idempotencyStore';
import { createRedisRateLimiter } from './rateLimiter';

const SUITE = 'Redis rate limiter and idempotency store (integration)';


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A port nothing listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

if (!process.env.REDIS_URL && !dockerAnswers()) {
  describeSkipped(SUITE, 'REDIS_URL is not set and no Docker engine answers');
} else {
  describe(SUITE, () => {
    let url: string;
    let stopContainer: (() => Promise<unknown>) | undefined;
    let redis: Redis;
    let second: Redis; // another "gateway process"
    const tenants: string[] = [];
    const tenant = () => {
      const t = randomUUID();
      tenants.push(t);
      return t;
    };

    beforeAll(async () => {
      if (process.env.REDIS_URL) {
        url = process.env.REDIS_URL;
      } else {
        const { GenericContainer, Wait } = await import('testcontainers');
        const c = await new GenericContainer('redis:7.0.15').withExposedPorts(6379).withWaitStrategy(Wait.forLogMessage('Ready to accept connections')).start();
        stopContainer = () => c.stop();
        url = `redis://${c.getHost()}:${c.getMappedPort(6379)}`;
      }
      redis = await connectRedis(url);
      second = await connectRedis(url);
    }, 120_000);

    afterAll(async () => {
      if (redis) {
        const limiter = createRedisRateLimiter(redis);
        for (const t of tenants) await limiter.forgetPrefix(`tr:${t}:`);
      }
      await redis?.quit();
      await second?.quit();
      await stopContainer?.();
    });

    describe('connectRedis', () => {
      it('connects, and stops queueing commands once connected', async () => {
        expect(await redis.ping()).toBe('PONG');
        expect(redis.options.enableOfflineQueue).toBe(false);
      });

      // Bounds are the 5 s connect timeout plus slack for a loaded CI machine: what is proved is
      // that it gives up instead of retrying for ever, not how fast.
      it('fails within about 5 s when nothing answers, without leaking the password or a reconnect loop', async () => {
        const port = await closedPort();
        const started = Date.now();
        const err = (await connectRedis(`redis://app:s3cret@127.0.0.1:${port}`).catch((e: unknown) => e)) as Error;
        expect(err).toBeInstanceOf(Error);
        expect(err.message).toMatch(/not reachable/);
        expect(err.message).not.toContain('s3cret');
        expect(Date.now() - started).toBeLessThan(15_000);
      }, 30_000);

      it('gives up after 5 s on a server that accepts the connection but never answers', async () => {
        const silent = createServer(() => undefined);
        await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
        const { port } = silent.address() as { port: number };
        try {
          const started = Date.now();
          await expect(connectRedis(`redis://127.0.0.1:${port}`)).rejects.toThrow(/not reachable: timed out/);
          expect(Date.now() - started).toBeLessThan(15_000);
        } finally {
          silent.close();
        }
      }, 30_000);
    });

    describe('token bucket', () => {
      it('allows a burst, then limits, with the same decisions as the in-memory limiter', async () => {
        const limiter = createRedisRateLimiter(redis);
        const memory = createMemoryRateLimiter();
        const key = redisKey(tenant(), 'rl', 'tenant');
        // A very slow refill, so the milliseconds between calls cannot change any rounded number.
        const limit = { perSecond: 0.01, burst: 5 };
        const got: RateDecision[] = [];
        const want: RateDecision[] = [];
        for (let i = 0; i < 7; i++) {
          got.push(await limiter.take(key, limit));
          want.push(await memory.take(key, limit));
        }
        expect(got.map((d) => d.allowed)).toEqual([true, true, true, true, true, false, false]);
        expect(got.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0]);
        expect(got).toEqual(want);
        expect(got[5]).toMatchObject({ limit: 5, retryAfterSeconds: 100, resetSeconds: 500 });
      });

      it('refills over time, by the server clock', async () => {
        const limiter = createRedisRateLimiter(redis);
        const key = redisKey(tenant(), 'rl', 'tenant');
        // One token a second: the denials below hold unless a whole second passes between two
        // calls to a local Redis (at 20/s a 50 ms stall of a loaded machine refilled one).
        const limit = { perSecond: 1, burst: 2 };
        expect((await limiter.take(key, limit)).allowed).toBe(true);
        expect((await limiter.take(key, limit)).allowed).toBe(true);
        expect((await limiter.take(key, limit)).allowed).toBe(false);
        await sleep(1_200); // at least one token back
        expect((await limiter.take(key, limit)).allowed).toBe(true);
        await sleep(2_500); // long enough to be full again, never more than burst
        const a = await limiter.take(key, limit);
        const b = await limiter.take(key, limit);
        const c = await limiter.take(key, limit);
        expect([a.allowed, b.allowed, c.allowed]).toEqual([true, true, false]);
      });

      it('keeps keys apart: tenant A at its limit does not affect tenant B', async () => {
        const limiter = createRedisRateLimiter(redis);
        const a = redisKey(tenant(), 'rl', 'tenant');
        const b = redisKey(tenant(), 'rl', 'tenant');
        const limit = { perSecond: 0.01, burst: 3 };
        for (let i = 0; i < 3; i++) await limiter.take(a, limit);
        expect((await limiter.take(a, limit)).allowed).toBe(false);
        const firstOfB = await limiter.take(b, limit);
        expect(firstOfB).toMatchObject({ allowed: true, remaining: 2 });
      });

      it('gives a Retry-After that is right: waiting that long is enough', async () => {
        const limiter = createRedisRateLimiter(redis);
        const key = redisKey(tenant(), 'rl', 'token', 'tok1');
        const limit = { perSecond: 1, burst: 1 };
        expect((await limiter.take(key, limit)).allowed).toBe(true);
        const denied = await limiter.take(key, limit);
        expect(denied).toMatchObject({ allowed: false, retryAfterSeconds: 1, resetSeconds: 1 });
        await sleep(denied.retryAfterSeconds * 1000 + 20);
        expect((await limiter.take(key, limit)).allowed).toBe(true);

        // The login throttle's shape: 10 attempts, one more every 6 s.
        const login = redisKey(tenant(), 'rl', 'login');
        for (let i = 0; i < 10; i++) await limiter.take(login, { perSecond: 1 / 6, burst: 10 });
        expect(await limiter.take(login, { perSecond: 1 / 6, burst: 10 })).toMatchObject({ allowed: false, retryAfterSeconds: 6, resetSeconds: 60 });
      });

      it('never hands out more than the burst under concurrency, across processes', async () => {
        const limiters = [createRedisRateLimiter(redis), createRedisRateLimiter(second)];
        const key = redisKey(tenant(), 'rl', 'tenant');
        const limit = { perSecond: 0.001, burst: 10 };
        const decisions = await Promise.all(Array.from({ length: 60 }, (_, i) => limiters[i % 2]!.take(key, limit)));
        expect(decisions.filter((d) => d.allowed)).toHaveLength(10);
      });

      it('lets a bucket expire once it would be full again', async () => {
        const limiter = createRedisRateLimiter(redis);
        const key = redisKey(tenant(), 'rl', 'tenant');
        // One token short: full again in 1 s (at 100 ms a stall between the two calls let it expire first).
        await limiter.take(key, { perSecond: 1, burst: 2 });
        const ttl = await redis.pttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(1_000);
        await sleep(1_100);
        expect(await redis.exists(key)).toBe(0);
      });

      it('rejects a limit that cannot be a token bucket', async () => {
        const limiter = createRedisRateLimiter(redis);
        const key = redisKey(tenant(), 'rl', 'tenant');
        await expect(limiter.take(key, { perSecond: 0, burst: 5 })).rejects.toThrow(/invalid rate limit/);
        await expect(limiter.take(key, { perSecond: 1, burst: 0 })).rejects.toThrow(/invalid rate limit/);
      });

      it('forgetPrefix removes exactly the keys under the prefix, even with glob characters in it', async () => {
        const limiter = createRedisRateLimiter(redis);
        const gone = tenant();
        const kept = tenant();
        const limit = { perSecond: 0.01, burst: 5 };
        for (let i = 0; i < 30; i++) await limiter.take(redisKey(gone, 'rl', 'token', `t${i}`), limit);
        await limiter.take(redisKey(kept, 'rl', 'tenant'), limit);
        await limiter.forgetPrefix(`tr:${gone}:`);
        expect(await redis.keys(`tr:${gone}:*`)).toEqual([]);
        expect(await redis.exists(redisKey(kept, 'rl', 'tenant'))).toBe(1);

        const base = `test:${randomUUID()}:`;
        await redis.set(`${base}a[1]*:x`, '1', 'EX', 60);
        await redis.set(`${base}a1:y`, '1', 'EX', 60);
        await limiter.forgetPrefix(`${base}a[1]*`);
        expect(await redis.exists(`${base}a[1]*:x`)).toBe(0);
        expect(await redis.exists(`${base}a1:y`)).toBe(1);
        await redis.del(`${base}a1:y`);

        await expect(limiter.forgetPrefix('')).rejects.toThrow(/non-empty/);
      });
    });

    describe('idempotency store', () => {
      const response = { requestHash: 'h1', status: 201, body: { documentId: 'd1', nested: { list: [1, 2] } }, location: '/v1/documents/d1', contentType: 'application/json; charset=utf-8' };

      it('reserves, reports in-progress, then replays the completed response', async () => {
        const store = createRedisIdempotencyStore(redis);
        const key = redisKey(tenant(), 'idem', 'k1');
        expect(await store.begin(key, 'h1', 60)).toEqual({ state: 'new' });
        expect(await store.begin(key, 'h1', 60)).toEqual({ state: 'in_progress' });
        await store.complete(key, response, 60);
        expect(await store.begin(key, 'h2', 60)).toEqual({ state: 'done', ...response });
        // Another process sees the same.
        expect(await createRedisIdempotencyStore(second).begin(key, 'h1', 60)).toEqual({ state: 'done', ...response });
        const ttl = await redis.ttl(key);
        expect(ttl).toBeGreaterThan(50);
        expect(ttl).toBeLessThanOrEqual(60);
      });

      it('keeps a response without body or location as null', async () => {
        const store = createRedisIdempotencyStore(redis);
        const key = redisKey(tenant(), 'idem', 'k2');
        await store.begin(key, 'h', 60);
        await store.complete(key, { requestHash: 'h', status: 204, body: null, location: null }, 60);
        expect(await store.begin(key, 'h', 60)).toEqual({ state: 'done', requestHash: 'h', status: 204, body: null, location: null, contentType: null });
      });

      it('frees the key on abandon, and when the reservation expires', async () => {
        const store = createRedisIdempotencyStore(redis);
        const key = redisKey(tenant(), 'idem', 'k3');
        expect(await store.begin(key, 'h', 60)).toEqual({ state: 'new' });
        await store.abandon(key);
        expect(await store.begin(key, 'h', 1)).toEqual({ state: 'new' });
        await sleep(1_100);
        expect(await store.begin(key, 'h', 60)).toEqual({ state: 'new' });
      });

      it('gives exactly one of many concurrent requests the reservation, across processes', async () => {
        const stores = [createRedisIdempotencyStore(redis), createRedisIdempotencyStore(second)];
        const key = redisKey(tenant(), 'idem', 'race');
        const results = await Promise.all(Array.from({ length: 40 }, (_, i) => stores[i % 2]!.begin(key, 'h', 60)));
        expect(results.filter((r) => r.state === 'new')).toHaveLength(1);
        expect(results.filter((r) => r.state === 'in_progress')).toHaveLength(39);
      });

      it('refuses a record it cannot read rather than guessing', async () => {
        const store = createRedisIdempotencyStore(redis);
        const key = redisKey(tenant(), 'idem', 'corrupt');
        await redis.set(key, 'not json', 'EX', 60);
        await expect(store.begin(key, 'h', 60)).rejects.toThrow(/not JSON/);
      });
    });
  });
}
