import { dcg, dedupeRanking, mean, mrrAt, ndcgAt, percentile, recallAt } from './metrics';

// Graded judgements: a is the best answer, d is judged but not relevant.
const qrels = new Map<string, number>([
  ['a', 3],
  ['b', 2],
  ['c', 1],
  ['d', 0],
]);
// Ideal DCG: gains 3, 2, 1 at ranks 1..3 -> 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.261859507 + 0.5
const IDCG = 4.761859507;

describe('dcg', () => {
  it('uses linear gains and a log2(rank + 1) discount', () => {
    expect(dcg([3, 2, 1])).toBeCloseTo(IDCG, 8);
    expect(dcg([0, 3])).toBeCloseTo(3 / Math.log2(3), 12); // 1.892789261
    expect(dcg([])).toBe(0);
  });
});

describe('ndcgAt', () => {
  it('is 1 for the ideal ordering', () => {
    expect(ndcgAt(['a', 'b', 'c'], qrels)).toBeCloseTo(1, 12);
    expect(ndcgAt(['a', 'b', 'c', 'd', 'x'], qrels)).toBeCloseTo(1, 12);
  });

  it('uses the grade as gain (graded relevance, hand computed)', () => {
    // [d, a, x, b]: 0 + 3/log2(3) + 0 + 2/log2(5) = 1.892789261 + 0.861353116 = 2.754142377
    expect(ndcgAt(['d', 'a', 'x', 'b'], qrels)).toBeCloseTo(2.754142377 / IDCG, 8); // 0.578375...
    expect(ndcgAt(['d', 'a', 'x', 'b'], qrels)).toBeCloseTo(0.578375, 5);
    // Reversed ideal [c, b, a]: 1 + 2/log2(3) + 3/2 = 3.761859507
    expect(ndcgAt(['c', 'b', 'a'], qrels)).toBeCloseTo(3.761859507 / IDCG, 8); // 0.789999...
  });

  it('a higher grade first scores more than a lower grade first', () => {
    expect(ndcgAt(['a', 'c'], qrels)).toBeGreaterThan(ndcgAt(['c', 'a'], qrels));
  });

  it('takes the ideal DCG from all judged documents, not only the retrieved ones', () => {
    // Only a retrieved, at rank 1: 3 / IDCG = 0.630005...
    expect(ndcgAt(['a'], qrels)).toBeCloseTo(3 / IDCG, 8);
    expect(ndcgAt(['a'], qrels)).toBeCloseTo(0.63, 4);
  });

  it('cuts both the ranking and the ideal at k', () => {
    // 12 relevant documents of grade 1; the first 10 retrieved are all relevant: perfect at 10.
    const many = new Map(Array.from({ length: 12 }, (_, i) => [`r${i}`, 1] as [string, number]));
    const top = Array.from({ length: 12 }, (_, i) => `r${i}`);
    expect(ndcgAt(top, many, 10)).toBeCloseTo(1, 12);
    // A relevant document at rank 11 does not count at k = 10.
    const late = [...Array.from({ length: 10 }, (_, i) => `x${i}`), 'a'];
    expect(ndcgAt(late, qrels, 10)).toBe(0);
    // k = 1: [b, a] -> 2 / 3
    expect(ndcgAt(['b', 'a'], qrels, 1)).toBeCloseTo(2 / 3, 12);
  });

  it('counts a duplicated id once, at its first rank', () => {
    // [a, a, b] == [a, b]: (3 + 2/log2(3)) / IDCG
    expect(ndcgAt(['a', 'a', 'b'], qrels)).toBeCloseTo((3 + 2 / Math.log2(3)) / IDCG, 10);
  });

  it('treats negative grades as 0 and accepts a plain object', () => {
    expect(ndcgAt(['n', 'a'], { a: 1, n: -2 })).toBeCloseTo(1 / Math.log2(3), 12);
  });

  it('is 0 for a query without relevant judgements', () => {
    expect(ndcgAt(['d'], new Map([['d', 0]]))).toBe(0);
  });
});

describe('recallAt', () => {
  it('is the fraction of relevant (grade > 0) documents in the first k', () => {
    expect(recallAt(['d', 'a', 'x', 'b'], qrels)).toBeCloseTo(2 / 3, 12); // d is judged 0: not relevant
    expect(recallAt(['d', 'a', 'x', 'b'], qrels, 2)).toBeCloseTo(1 / 3, 12);
    expect(recallAt(['c', 'b', 'a'], qrels)).toBe(1);
    expect(recallAt(['a', 'a', 'a'], qrels)).toBeCloseTo(1 / 3, 12);
    expect(recallAt([], qrels)).toBe(0);
    expect(recallAt(['d'], { d: 0 })).toBe(0);
  });
});

describe('mrrAt', () => {
  it('is 1 / rank of the first relevant document within k', () => {
    expect(mrrAt(['a'], qrels)).toBe(1);
    expect(mrrAt(['d', 'x', 'c'], qrels)).toBeCloseTo(1 / 3, 12);
    expect(mrrAt(['x', 'x', 'b'], qrels)).toBe(0.5); // duplicate x counts once
    expect(mrrAt(['d', 'x'], qrels)).toBe(0);
    const late = [...Array.from({ length: 10 }, (_, i) => `x${i}`), 'a'];
    expect(mrrAt(late, qrels, 10)).toBe(0);
    expect(mrrAt(late, qrels, 11)).toBeCloseTo(1 / 11, 12);
  });
});

describe('dedupeRanking', () => {
  it('keeps first occurrences in order, then cuts', () => {
    expect(dedupeRanking(['a', 'b', 'a', 'c', 'b', 'd'])).toEqual(['a', 'b', 'c', 'd']);
    expect(dedupeRanking(['a', 'b', 'a', 'c', 'b', 'd'], 3)).toEqual(['a', 'b', 'c']);
  });
});

describe('percentile (nearest rank)', () => {
  it('picks the smallest value with at least p% of values at or below it', () => {
    expect(percentile([4, 1, 3, 2], 50)).toBe(2);
    expect(percentile([4, 1, 3, 2], 75)).toBe(3);
    expect(percentile([4, 1, 3, 2], 100)).toBe(4);
    expect(percentile([4, 1, 3, 2], 0)).toBe(1);
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted input
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });

  it('does not reorder its input', () => {
    const v = [3, 1, 2];
    percentile(v, 50);
    expect(v).toEqual([3, 1, 2]);
  });
});

describe('mean', () => {
  it('averages', () => {
    expect(mean([1, 2, 3, 4])).toBe(2.5);
    expect(mean([])).toBeNaN();
  });
});
