/**
 * Polls `fn` every 100 ms until `ok` holds for its value; throws with the last value after
 * `timeoutMs` (30 s by default: the store's reads are fenced cluster-wide, and other suites on the
 * shared CI server can hold the projections back for seconds).
 */
export async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`condition not met in time; last value ${JSON.stringify(v).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
