import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what the last major GC kept before it collects
 * again, in percent (HEAP_GROWTH_PERCENT). Left to itself V8 picks a factor of up to 4x when its
 * collector is fast, which a process that loads and evicts tenants' indexes all day turns into
 * resident memory: 2,500 tenants of 100 chunks searched once under INDEX_MEMORY_MB=128 peaked at
 * 464 MiB of RSS with V8's own factor, 331 MiB with 20% and 322 MiB with 10% (the process of
 * bench/indexChild.ts), search latency unchanged. 0 keeps V8's own policy.
 */
export const DEFAULT_HEAP_GROWTH_PERCENT = 20;

/** Applies the limit (as parsed by services/config.ts) to this process (V8 reads the flag at every major GC). */
export function limitHeapGrowth(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
