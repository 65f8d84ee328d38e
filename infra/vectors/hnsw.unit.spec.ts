import { rng, unitVector } from '../../bench/data';
import { HnswGraph } from './hnsw';

/** The HNSW graph wrapper on random unit vectors: recall against exact search, partial adds, removals. */
describe('HnswGraph (usearch)', () => {
  const DIMS = 64;
  const rand = rng(11);
  const owner = (rows: number, id: string) => {
    const vectors = new Float32Array(rows * DIMS);
    for (let r = 0; r < rows; r++) vectors.set(unitVector(rand, DIMS), r * DIMS);
    return { id, dims: DIMS, vectors };
  };
  type Owner = ReturnType<typeof owner>;
  const dot = (o: Owner, row: number, q: Float32Array) => {
    let s = 0;
    for (let d = 0; d < DIMS; d++) s += o.vectors[row * DIMS + d]! * q[d]!;
    return s;
  };
  const exact = (owners: Owner[], q: Float32Array, k: number) =>
    owners
      .flatMap((o) => Array.from({ length: o.vectors.length / DIMS }, (_, row) => ({ key: `${o.id}/${row}`, s: dot(o, row, q) })))
      .sort((a, b) => b.s - a.s)
      .slice(0, k)
      .map((x) => x.key);

  it('finds at least 95% of the exact top 10, with owners added in parts and interleaved', () => {
    const owners = Array.from({ length: 20 }, (_, i) => owner(150, `o${i}`));
    const g = new HnswGraph<Owner>(DIMS);
    // Every owner in slices of 50 rows, round robin: key ranges are reserved, so interleaving is safe.
    for (let upto = 50; upto <= 150; upto += 50) for (const o of owners) g.add(o, upto);
    expect(owners.every((o) => g.complete(o))).toBe(true);
    expect(g.live).toBe(3000);
    let found = 0;
    const Q = 100;
    for (let i = 0; i < Q; i++) {
      const q = unitVector(rand, DIMS);
      const want = new Set(exact(owners, q, 10));
      const got = g.search(q, 10)!;
      expect(got).toHaveLength(10);
      found += got.filter((h) => want.has(`${h.owner.id}/${h.row}`)).length;
    }
    expect(found / (10 * Q)).toBeGreaterThanOrEqual(0.95);
  });

  it('never returns a removed owner, also one removed half added', () => {
    const a = owner(200, 'a');
    const b = owner(200, 'b');
    const c = owner(200, 'c');
    const g = new HnswGraph<Owner>(DIMS);
    g.add(a);
    g.add(b, 100);
    g.add(c);
    expect(g.complete(b)).toBe(false);
    g.remove(b);
    g.remove(a);
    expect(g.live).toBe(200);
    expect(g.dead).toBe(300);
    for (let i = 0; i < 50; i++) {
      const q = i % 2 ? unitVector(rand, DIMS) : a.vectors.subarray(i * DIMS, (i + 1) * DIMS);
      const got = g.search(q, 20)!;
      expect(got.length).toBeGreaterThan(0);
      expect(got.every((h) => h.owner === c)).toBe(true);
    }
    // Other dims are never added; a closed graph answers null.
    const wide = { id: 'w', dims: DIMS * 2, vectors: new Float32Array(DIMS * 2 * 3) };
    g.add(wide);
    expect(g.live).toBe(200);
    g.close();
    expect(g.search(c.vectors.subarray(0, DIMS), 5)).toBeNull();
    expect(g.bytes).toBe(0);
  });
});
