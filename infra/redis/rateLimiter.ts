import type Redis from 'ioredis';
import type { RateLimit } from '../../contracts/events';
import { createMemoryRateLimiter, type RateDecision, type RateLimiter } from '../../services/gateway/rateLimit';

/**
 * Token bucket per key in Redis, shared by every gateway process.
 *
 * One Lua script does read-refill-take-write, so concurrent requests on any number of processes
 * never both spend the last token. Time comes from the Redis server (`TIME`), not from the
 * callers, so gateways with skewed clocks agree on one bucket. A bucket is a hash {tokens, at}
 * that expires when it would be full again: an absent key means a full bucket, so idle keys cost
 * no memory and need no sweeping.
 *
 * Same semantics as the in-memory limiter: capacity `burst`, refilled continuously at
 * `perSecond`, one token per request.
 */
const TAKE_TOKEN_LUA = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
-- No refill if the server clock stepped back; never above the (possibly lowered) burst.
if now > at then
  tokens = tokens + (now - at) / 1000 * rate
  at = now
end
if tokens > burst then tokens = burst end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
local ttl = math.ceil((burst - tokens) / rate * 1000)
if ttl > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('DEL', KEYS[1])
end
-- Strings: a Lua number would be truncated to an integer reply.
return { allowed, string.format('%.17g', tokens) }
`;

const COMMAND = 'tenantRagTakeToken';

type WithTakeToken = Redis & { [COMMAND](key: string, perSecond: string, burst: string): Promise<[number, string]> };

/** SCAN MATCH treats *, ?, [ and \ as pattern syntax: a prefix must match only itself. */
function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * While Redis cannot be reached (restart, network cut) each process limits with its own
 * in-memory buckets (same limits, per process instead of shared) rather than failing every
 * request: a Redis outage must not turn into a storm of 5xx. Back on Redis at its first answer.
 */
export function createRedisRateLimiter(redis: Redis, opts: { log?: (level: 'warn' | 'info', msg: string, extra?: Record<string, unknown>) => void } = {}): RateLimiter {
  // EVALSHA with a fallback to EVAL when the server lost its script cache (restart, failover).
  redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: TAKE_TOKEN_LUA });
  const client = redis as WithTakeToken;
  const local = createMemoryRateLimiter();
  let degradedSince: number | null = null;

  return {
    kind: 'redis',

    async take(key, { perSecond, burst }: RateLimit): Promise<RateDecision> {
      if (!(perSecond > 0) || !Number.isFinite(perSecond) || !(burst >= 1) || !Number.isFinite(burst)) {
        throw new Error(`invalid rate limit: perSecond ${perSecond}, burst ${burst}`);
      }
      let reply: [number, string];
      try {
        reply = await client[COMMAND](key, String(perSecond), String(burst));
      } catch (err) {
        if (degradedSince === null) {
          degradedSince = Date.now();
          opts.log?.('warn', 'rate limits: Redis unreachable, limiting per process in memory until it answers', { error: (err as Error).message });
        }
        return local.take(key, { perSecond, burst });
      }
      if (degradedSince !== null) {
        opts.log?.('info', 'rate limits: back on Redis', { degradedMs: Date.now() - degradedSince });
        degradedSince = null;
      }
      const [allowedFlag, tokensText] = reply;
      const allowed = Number(allowedFlag) === 1;
      const tokens = Number(tokensText);
      return {
        allowed,
        limit: burst,
        remaining: Math.floor(tokens),
        retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / perSecond)),
        resetSeconds: Math.ceil((burst - tokens) / perSecond),
      };
    },

    async forgetPrefix(prefix) {
      // An empty prefix would wipe every key of a Redis that may be shared with other systems.
      if (prefix === '') throw new Error('forgetPrefix needs a non-empty prefix');
      // SCAN walks the keyspace in small steps without blocking the server (KEYS would);
      // UNLINK frees memory in the background.
      const stream = redis.scanStream({ match: `${escapeGlob(prefix)}*`, count: 500 });
      for await (const keys of stream as AsyncIterable<string[]>) {
        if (keys.length) await redis.unlink(...keys);
      }
    },
  };
}
