import type { Embedder } from '../core/ports';
import type { ServingEmbedders } from '../../projections/index/servingEmbedders';
import type { Candidate, Hit, KnowledgeIndex } from './knowledgeIndex';

export type SearchMode = 'hybrid' | 'keyword' | 'semantic';

export interface SearchRequest {
  query: string;
  topK: number;
  mode: SearchMode;
  documentId?: string;
}

/** Reciprocal-rank fusion constant (Cormack et al. 2009); 60 is the customary, collection-independent choice. */
export const RRF_K = 60;
/** How deep each ranking is read before fusing. */
export const FUSION_DEPTH = 100;
/** Weight of the semantic (vector) ranking in convex fusion; the keyword ranking gets 1 - this. */
export const DENSE_WEIGHT = 0.5;

const candKey = (c: Candidate) => `${c.documentId}/${c.version}/${c.chunkIndex}`;
const byScore = (a: { cand: Candidate; score: number }, b: { cand: Candidate; score: number }) =>
  b.score - a.score || a.cand.documentId.localeCompare(b.cand.documentId) || a.cand.chunkIndex - b.cand.chunkIndex;

/**
 * The hybrid mode's fusion: a convex combination of min-max-normalised scores (Bruch et al. 2023,
 * "An analysis of fusion functions for hybrid retrieval"; it beat reciprocal-rank fusion on the
 * tune half of Cranfield, nDCG@10 0.580 against 0.564, and in their study; other depths,
 * normalisations and weights 0.4-0.6 were within 0.01 of it there). Each ranking, as read
 * (FUSION_DEPTH deep), has its scores mapped to [0, 1]: (s - min) / (max - min) over that
 * ranking (1 for every item when all are equal); an item absent from a ranking gets 0 there. The fused score is
 *     denseWeight * semantic' + (1 - denseWeight) * keyword'
 * so it lies in [0, 1], 1.0 meaning "first in both rankings"; comparable within a response only.
 */
export function fuseConvex(keyword: Candidate[], semantic: Candidate[], denseWeight = DENSE_WEIGHT): Candidate[] {
  const scores = new Map<string, { cand: Candidate; score: number }>();
  const add = (list: Candidate[], weight: number) => {
    if (list.length === 0) return;
    let min = Infinity;
    let max = -Infinity;
    for (const c of list) {
      if (c.score < min) min = c.score;
      if (c.score > max) max = c.score;
    }
    const range = max - min;
    for (const cand of list) {
      const key = candKey(cand);
      const entry = scores.get(key) ?? { cand, score: 0 };
      entry.score += weight * (range > 0 ? (cand.score - min) / range : 1);
      scores.set(key, entry);
    }
  };
  add(keyword, 1 - denseWeight);
  add(semantic, denseWeight);
  return [...scores.values()].sort(byScore).map(({ cand, score }) => ({ ...cand, score }));
}

/**
 * Reciprocal-rank fusion of ranked lists (the hybrid default before fuseConvex; kept for
 * comparisons). The score of an item is sum 1/(k + rank), divided by its maximum (an item ranked
 * first in every list), so scores lie in (0, 1] and are comparable within a response.
 */
export function fuseRrf(lists: Candidate[][], k = RRF_K): Candidate[] {
  const scores = new Map<string, { cand: Candidate; score: number }>();
  for (const list of lists) {
    list.forEach((cand, rank) => {
      const key = candKey(cand);
      const entry = scores.get(key) ?? { cand, score: 0 };
      entry.score += 1 / (k + rank + 1);
      scores.set(key, entry);
    });
  }
  const max = lists.length / (k + 1);
  return [...scores.values()]
    .sort(byScore)
    .map(({ cand, score }) => ({ ...cand, score: score / max }));
}

export async function search(deps: { index: KnowledgeIndex; embedder: Embedder; serving?: ServingEmbedders }, tenantId: string, req: SearchRequest): Promise<Hit[]> {
  const { index } = deps;
  // The tenant's serving embedder (the previous one while a re-embedding builds beside it): the
  // query is embedded with it and every ranking reads its chunk sets only. When it can no longer
  // be loaded the tenant answers by keyword over those chunks until it switches: never empty.
  const served = deps.serving ? await deps.serving.forSearch(tenantId) : { embedderId: deps.embedder.id, embedder: deps.embedder, fallbackEmbedderId: null };
  const embedder = served.embedder;
  const scope = {
    topK: req.mode === 'hybrid' ? Math.max(FUSION_DEPTH, req.topK) : req.topK,
    documentId: req.documentId,
    embedderId: served.embedderId,
    fallbackEmbedderId: served.fallbackEmbedderId,
  };
  let ranked: Candidate[];
  if (req.mode === 'keyword' || !embedder) {
    ranked = await index.keyword(tenantId, req.query, scope);
  } else {
    const [vector] = await embedder.embed([req.query], 'query');
    if (req.mode === 'semantic') {
      ranked = await index.vector(tenantId, vector!, scope);
    } else {
      if (index.hybrid) {
        ranked = await index.hybrid(tenantId, req.query, vector!, { ...scope, topK: req.topK });
      } else {
        const [kw, vec] = await Promise.all([index.keyword(tenantId, req.query, scope), index.vector(tenantId, vector!, scope)]);
        ranked = fuseConvex(kw, vec);
      }
    }
  }
  return index.hydrate(tenantId, ranked.slice(0, req.topK));
}
