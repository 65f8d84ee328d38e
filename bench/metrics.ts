/**
 * Retrieval metrics, trec_eval style. Pure functions, no I/O.
 *
 * A ranking is a list of document ids, best first, without duplicates (see `dedupeRanking`).
 * Judgements (qrels) map a document id to a graded relevance; a document is relevant when its
 * grade is > 0. Unjudged documents count as grade 0, negative grades are treated as 0.
 */

export type Qrels = ReadonlyMap<string, number> | Readonly<Record<string, number>>;

function grades(qrels: Qrels): Map<string, number> {
  return qrels instanceof Map ? (qrels as Map<string, number>) : new Map(Object.entries(qrels));
}

const gainOf = (g: number | undefined): number => (g !== undefined && g > 0 ? g : 0);

/** Keeps the first occurrence of every id (its rank), drops later ones, then cuts to `k`. */
export function dedupeRanking(ids: readonly string[], k = Infinity): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const id of ids) {
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(id);
    if (out.length >= k) break;
  }
  return out;
}

/** DCG of a list of gains, linear gain, discount log2(rank + 1) with rank starting at 1. */
export function dcg(gains: readonly number[]): number {
  let sum = 0;
  gains.forEach((g, i) => {
    sum += g / Math.log2(i + 2);
  });
  return sum;
}

/**
 * nDCG@k with linear gains (the qrels grade), as trec_eval's ndcg_cut: the ideal DCG is computed
 * from all judged documents of the query (not only the retrieved ones), sorted by grade and cut
 * at k. A query without any relevant judgement scores 0 (callers should skip such queries).
 */
export function ndcgAt(ranking: readonly string[], qrels: Qrels, k = 10): number {
  const g = grades(qrels);
  const ideal = [...g.values()].map(gainOf).filter((x) => x > 0).sort((a, b) => b - a).slice(0, k);
  const idcg = dcg(ideal);
  if (idcg === 0) return 0;
  const got = dedupeRanking(ranking, k).map((id) => gainOf(g.get(id)));
  return dcg(got) / idcg;
}

/** Fraction of the relevant (grade > 0) documents found in the first k. 0 when none is relevant. */
export function recallAt(ranking: readonly string[], qrels: Qrels, k = 10): number {
  const g = grades(qrels);
  let relevant = 0;
  for (const v of g.values()) if (v > 0) relevant++;
  if (relevant === 0) return 0;
  const found = dedupeRanking(ranking, k).filter((id) => gainOf(g.get(id)) > 0).length;
  return found / relevant;
}

/** Reciprocal rank of the first relevant (grade > 0) document within the first k, else 0. */
export function mrrAt(ranking: readonly string[], qrels: Qrels, k = 10): number {
  const g = grades(qrels);
  const top = dedupeRanking(ranking, k);
  for (let i = 0; i < top.length; i++) if (gainOf(g.get(top[i]!)) > 0) return 1 / (i + 1);
  return 0;
}

/**
 * Percentile by the nearest-rank method: the smallest value such that at least p% of the values
 * are <= it (p50 of [1,2,3,4] is 2, p99 of 100 values is the 99th smallest). NaN for no values.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Arithmetic mean; NaN for no values. */
export function mean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}
