import type { RateLimit } from '../../contracts/events';

export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until a request would be allowed again (0 when allowed). */
  retryAfterSeconds: number;
  /** Seconds until the bucket is full again. */
  resetSeconds: number;
}

/** Token bucket per key. In-memory for the embedded profile; Redis (one Lua script) in production. */
export interface RateLimiter {
  readonly kind: 'memory' | 'redis';
  take(key: string, limit: RateLimit): Promise<RateDecision>;
  forgetPrefix(prefix: string): Promise<void>;
}

export function createMemoryRateLimiter(now: () => number = () => Date.now()): RateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    kind: 'memory',
    async take(key, { perSecond, burst }) {
      const t = now();
      const b = buckets.get(key) ?? { tokens: burst, at: t };
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * perSecond);
      b.at = t;
      let allowed = false;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        allowed = true;
      }
      buckets.set(key, b);
      if (buckets.size > 100_000) {
        // Full buckets carry no information: drop them to bound memory.
        for (const [k, v] of buckets) if (v.tokens >= burst - 1) buckets.delete(k);
      }
      return {
        allowed,
        limit: burst,
        remaining: Math.floor(b.tokens),
        retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / perSecond)),
        resetSeconds: Math.ceil((burst - b.tokens) / perSecond),
      };
    },
    async forgetPrefix(prefix) {
      for (const k of buckets.keys()) if (k.startsWith(prefix)) buckets.delete(k);
    },
  };
}
