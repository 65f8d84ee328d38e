import type { Candidate } from './knowledgeIndex';
import { DENSE_WEIGHT, fuseConvex, fuseRrf } from './search';

const c = (documentId: string, score: number, chunkIndex = 0): Candidate => ({ documentId, version: 1, chunkIndex, score });
const keys = (list: Candidate[]) => list.map((x) => `${x.documentId}${x.chunkIndex}`);

describe('fuseConvex', () => {
  it('combines min-max-normalised scores with the dense weight', () => {
    const keyword = [c('a', 12), c('b', 8), c('c', 2)]; // normalised 1, 0.6, 0
    const semantic = [c('b', 0.9), c('d', 0.7), c('a', 0.5)]; // normalised 1, 0.5, 0
    const fused = fuseConvex(keyword, semantic, 0.5);
    const score = Object.fromEntries(fused.map((x) => [x.documentId, x.score]));
    expect(score.b).toBeCloseTo(0.5 * 0.6 + 0.5 * 1, 12);
    expect(score.a).toBeCloseTo(0.5 * 1 + 0.5 * 0, 12);
    expect(score.d).toBeCloseTo(0.5 * 0.5, 12);
    expect(score.c).toBeCloseTo(0, 12);
    expect(keys(fused)).toEqual(['b0', 'a0', 'd0', 'c0']);
  });

  it('lies in [0, 1], with 1 only for the first item of both rankings', () => {
    const fused = fuseConvex([c('a', 3.2), c('b', 1.1)], [c('a', 0.8), c('b', 0.3)]);
    expect(fused[0]).toEqual(c('a', 1));
    for (const x of fused) {
      expect(x.score).toBeGreaterThanOrEqual(0);
      expect(x.score).toBeLessThanOrEqual(1);
    }
  });

  it('weights the rankings: weight 1 is the semantic order, 0 the keyword order', () => {
    const keyword = [c('a', 5), c('b', 4), c('c', 1)];
    const semantic = [c('c', 0.9), c('b', 0.5), c('a', 0.1)];
    expect(keys(fuseConvex(keyword, semantic, 1))).toEqual(['c0', 'b0', 'a0']);
    expect(keys(fuseConvex(keyword, semantic, 0))).toEqual(['a0', 'b0', 'c0']);
    expect(DENSE_WEIGHT).toBeGreaterThan(0);
    expect(DENSE_WEIGHT).toBeLessThan(1);
  });

  it('handles an empty ranking, a single item and equal scores', () => {
    expect(fuseConvex([], [])).toEqual([]);
    expect(fuseConvex([], [c('a', 0.4), c('b', 0.2)], 0.5)).toEqual([c('a', 0.5), c('b', 0)]);
    expect(fuseConvex([c('a', 7)], [], 0.5)).toEqual([c('a', 0.5)]);
    // All equal: every item counts as the best of its ranking; ties by document id, then chunk.
    expect(fuseConvex([c('b', 2), c('a', 2, 1), c('a', 2, 0)], [], 0.5).map((x) => [keys([x])[0], x.score])).toEqual([
      ['a0', 0.5],
      ['a1', 0.5],
      ['b0', 0.5],
    ]);
  });

  it('keeps chunks and versions apart', () => {
    const fused = fuseConvex([c('a', 2, 1), c('a', 1, 0)], [c('a', 0.9, 1), { ...c('a', 0.1, 1), version: 2 }]);
    expect(fused).toHaveLength(3);
    expect(fused[0]).toEqual(c('a', 1, 1));
    expect(fused.find((x) => x.version === 2)).toEqual({ ...c('a', 0, 1), version: 2 });
  });
});

describe('fuseRrf', () => {
  it('sums 1/(k + rank), normalised so that first in every list is 1', () => {
    const fused = fuseRrf([[c('a', 9), c('b', 8)], [c('a', 0.9), c('c', 0.5)]], 60);
    expect(fused[0]).toEqual(c('a', 1));
    expect(fused.find((x) => x.documentId === 'b')!.score).toBeCloseTo(1 / 62 / (2 / 61), 12);
  });
});
