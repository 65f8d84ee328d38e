import type { Embedder } from '../core/ports';
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

/**
 * Reciprocal-rank fusion of ranked lists. The score of an item is sum 1/(k + rank), divided by
 * its maximum (an item ranked first in every list), so hybrid scores lie in (0, 1] and are
 * comparable within a response.
 */
export function fuseRrf(lists: Candidate[][], k = RRF_K): Candidate[] {
  const scores = new Map<string, { cand: Candidate; score: number }>();
  for (const list of lists) {
    list.forEach((cand, rank) => {
      const key = `${cand.documentId}/${cand.version}/${cand.chunkIndex}`;
      const entry = scores.get(key) ?? { cand, score: 0 };
      entry.score += 1 / (k + rank + 1);
      scores.set(key, entry);
    });
  }
  const max = lists.length / (k + 1);
  return [...scores.values()]
    .sort((a, b) => b.score - a.score || a.cand.documentId.localeCompare(b.cand.documentId) || a.cand.chunkIndex - b.cand.chunkIndex)
    .map(({ cand, score }) => ({ ...cand, score: score / max }));
}

export async function search(deps: { index: KnowledgeIndex; embedder: Embedder }, tenantId: string, req: SearchRequest): Promise<Hit[]> {
  const { index, embedder } = deps;
  const scope = { topK: req.mode === 'hybrid' ? Math.max(FUSION_DEPTH, req.topK) : req.topK, documentId: req.documentId };
  let ranked: Candidate[];
  if (req.mode === 'keyword') {
    ranked = await index.keyword(tenantId, req.query, scope);
  } else {
    const [vector] = await embedder.embed([req.query], 'query');
    if (req.mode === 'semantic') {
      ranked = await index.vector(tenantId, vector!, scope);
    } else {
      if (index.hybrid) {
        ranked = await index.hybrid(tenantId, req.query, vector!, { topK: req.topK, documentId: req.documentId });
      } else {
        const [kw, vec] = await Promise.all([index.keyword(tenantId, req.query, scope), index.vector(tenantId, vector!, scope)]);
        ranked = fuseRrf([kw, vec]);
      }
    }
  }
  return index.hydrate(tenantId, ranked.slice(0, req.topK));
}
