import { BM25_DEFAULTS, Bm25Index, parseTsvector, TermDict, type TermCounts } from './bm25';

const terms = (...words: string[]): TermCounts => {
  const m: TermCounts = new Map();
  for (const w of words) m.set(w, (m.get(w) ?? 0) + 1);
  return m;
};
const doc = (...chunks: string[][]) => chunks.map((words, chunkIndex) => ({ chunkIndex, terms: terms(...words) }));

/** Reference Okapi BM25 over whole chunks, straight from the formula. */
function reference(chunks: { id: string; words: string[] }[], query: string[], k1 = BM25_DEFAULTS.k1, b = BM25_DEFAULTS.b): Map<string, number> {
  const n = chunks.length;
  const avg = chunks.reduce((s, c) => s + c.words.length, 0) / n;
  const out = new Map<string, number>();
  for (const c of chunks) {
    let s = 0;
    for (const [t, qtf] of terms(...query)) {
      const df = chunks.filter((x) => x.words.includes(t)).length;
      const tf = c.words.filter((w) => w === t).length;
      if (!tf) continue;
      const idf = Math.log(1 + (n - df + 0.5) / (df + 0.5));
      s += (qtf * idf * tf * (k1 + 1)) / (tf + k1 * (1 - b + (b * c.words.length) / avg));
    }
    if (s > 0) out.set(c.id, s);
  }
  return out;
}

describe('Bm25Index', () => {
  it('scores exactly as Okapi BM25 (idf, tf saturation, length normalisation)', () => {
    const corpus = [
      { id: 'a', words: ['flow', 'wing', 'wing', 'shock'] },
      { id: 'b', words: ['flow', 'boundary', 'layer', 'flow', 'flow', 'heat', 'transfer', 'plate'] },
      { id: 'c', words: ['shock', 'wave', 'cone'] },
      { id: 'd', words: ['heat', 'plate'] },
    ];
    const ix = new Bm25Index();
    for (const c of corpus) ix.setDocument(c.id, 1, doc(c.words));
    for (const q of [['flow'], ['shock', 'wing'], ['heat', 'plate', 'flow'], ['flow', 'flow', 'cone'], ['nothing']]) {
      const expected = reference(corpus, q);
      const hits = ix.search(terms(...q), 10);
      expect(hits.map((h) => h.documentId).sort()).toEqual([...expected.keys()].sort());
      for (const h of hits) expect(h.score).toBeCloseTo(expected.get(h.documentId)!, 10);
      for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
    }
  });

  it('a rarer term weighs more (idf)', () => {
    const ix = new Bm25Index();
    ix.setDocument('common', 1, doc(['flow', 'x']));
    ix.setDocument('rare', 1, doc(['cone', 'x']));
    for (let i = 0; i < 10; i++) ix.setDocument(`filler${i}`, 1, doc(['flow', 'y']));
    const hits = ix.search(terms('flow', 'cone'), 2);
    expect(hits[0]!.documentId).toBe('rare');
  });

  it('normalises by chunk length with b, not at all with b = 0', () => {
    const short = ['flow', 'a'];
    const long = ['flow', 'a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const withB = new Bm25Index();
    const noB = new Bm25Index({ b: 0 });
    for (const ix of [withB, noB]) {
      ix.setDocument('short', 1, doc(short));
      ix.setDocument('long', 1, doc(long));
    }
    const [s1, s2] = withB.search(terms('flow'), 2);
    expect(s1!.documentId).toBe('short');
    expect(s1!.score).toBeGreaterThan(s2!.score);
    const [n1, n2] = noB.search(terms('flow'), 2);
    expect(n1!.score).toBeCloseTo(n2!.score, 12);
  });

  it('keeps statistics and results right across replace, remove and merges', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const vocab = Array.from({ length: 300 }, (_, i) => `t${i}`);
    const live = new Map<string, string[][]>();
    const ix = new Bm25Index();
    for (let step = 0; step < 3000; step++) {
      const id = `d${Math.floor(rand() * 400)}`;
      if (rand() < 0.2) {
        ix.removeDocument(id);
        live.delete(id);
      } else {
        const chunks = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => Array.from({ length: 3 + Math.floor(rand() * 30) }, () => vocab[Math.floor(rand() ** 2 * vocab.length)]!));
        ix.setDocument(id, step, doc(...chunks));
        live.set(id, chunks);
      }
    }
    const fresh = new Bm25Index();
    for (const [id, chunks] of [...live].reverse()) fresh.setDocument(id, 0, doc(...chunks));
    expect(ix.size).toBe(fresh.size);
    expect(ix.documents).toBe(live.size);
    for (const q of [['t0'], ['t1', 't50', 't299'], ['t3', 't3', 't7']]) {
      const a = ix.search(terms(...q), 50).map((h) => [h.documentId, h.chunkIndex, h.score.toFixed(9)]);
      const b = fresh.search(terms(...q), 50).map((h) => [h.documentId, h.chunkIndex, h.score.toFixed(9)]);
      expect(a).toEqual(b);
    }
    ix.merge();
    expect(ix.search(terms('t1', 't50'), 50)).toEqual(ix.search(terms('t1', 't50'), 50));
  });

  it('returns the searchable version, and stops finding removed documents', () => {
    const ix = new Bm25Index();
    ix.setDocument('a', 1, doc(['flow']));
    ix.setDocument('a', 2, doc(['wing'], ['flow', 'wing']));
    expect(ix.search(terms('flow'), 10)).toEqual([{ documentId: 'a', version: 2, chunkIndex: 1, score: expect.any(Number) }]);
    ix.removeDocument('a');
    expect(ix.search(terms('flow'), 10)).toEqual([]);
    expect(ix.size).toBe(0);
  });

  it('restricts to one document, cuts to k, and breaks ties by document id then chunk', () => {
    const ix = new Bm25Index();
    ix.setDocument('b', 1, doc(['flow'], ['flow']));
    ix.setDocument('a', 1, doc(['flow']));
    ix.setDocument('c', 1, doc(['other']));
    expect(ix.search(terms('flow'), 10).map((h) => `${h.documentId}${h.chunkIndex}`)).toEqual(['a0', 'b0', 'b1']);
    expect(ix.search(terms('flow'), 2).map((h) => `${h.documentId}${h.chunkIndex}`)).toEqual(['a0', 'b0']);
    expect(ix.search(terms('flow'), 10, 'b').map((h) => `${h.documentId}${h.chunkIndex}`)).toEqual(['b0', 'b1']);
    expect(ix.search(terms('flow'), 10, 'missing')).toEqual([]);
    expect(ix.search(new Map(), 10)).toEqual([]);
  });

  it('two instances (two tenants) share no terms, statistics or postings', () => {
    const acme = new Bm25Index();
    const globex = new Bm25Index();
    acme.setDocument('acme-1', 1, doc(['vault', 'code']));
    acme.setDocument('acme-2', 1, doc(['payroll']));
    const before = acme.search(terms('vault', 'payroll'), 10);
    for (let i = 0; i < 50; i++) globex.setDocument(`globex-${i}`, 1, doc(['vault', 'payroll', 'code']));
    expect(acme.search(terms('vault', 'payroll'), 10)).toEqual(before);
    expect(globex.search(terms('vault'), 100).every((h) => h.documentId.startsWith('globex-'))).toBe(true);
    expect(acme.search(terms('vault', 'payroll', 'code'), 100).every((h) => h.documentId.startsWith('acme-'))).toBe(true);
  });
});

describe('parseTsvector', () => {
  it('counts positions per lexeme', () => {
    expect(parseTsvector("'flow':1,5,9 'wing':2")).toEqual(new Map([['flow', 3], ['wing', 1]]));
  });
  it('reads weights, lexemes without positions, quotes and backslashes', () => {
    expect(parseTsvector("'a':1A,2B 'b' 'it''s':3 'back\\\\slash':4 'x:y':5,6")).toEqual(
      new Map([
        ['a', 2],
        ['b', 1],
        ["it's", 1],
        ['back\\slash', 1],
        ['x:y', 2],
      ]),
    );
  });
  it('reads the empty vector', () => {
    expect(parseTsvector('')).toEqual(new Map());
  });
});

describe('TermDict', () => {
  it('gives every distinct term one dense id, in order, across table growth (non-ASCII and long terms too)', () => {
    const d = new TermDict();
    const words = Array.from({ length: 20_000 }, (_, i) => (i % 3 === 0 ? `straße-${i}` : i % 3 === 1 ? `${'x'.repeat(i % 40)}${i}` : `日本${i}`));
    words.forEach((w, i) => expect(d.intern(w)).toBe(i));
    expect(d.size).toBe(words.length);
    // Interning again finds, never adds; get() agrees; an absent term (a prefix, a different case) is -1.
    words.forEach((w, i) => {
      expect(d.intern(w)).toBe(i);
      expect(d.get(w)).toBe(i);
    });
    expect(d.size).toBe(words.length);
    for (const absent of ['', 'straße', 'STRASSE-0', '日本', 'x', `${words[5]}x`]) expect(d.get(absent)).toBe(-1);
    expect(d.intern('')).toBe(words.length);
    expect(d.get('')).toBe(words.length);
  });

  it('copies kept terms into a compacted dictionary that finds them under their new ids', () => {
    const d = new TermDict();
    const words = Array.from({ length: 1000 }, (_, i) => `w${i}é`);
    for (const w of words) d.intern(w);
    const keep = new Int32Array(words.length).map((_, i) => (i % 4 === 0 ? 1 : 0));
    const c = new TermDict(250, d.charsOf(keep));
    words.forEach((_, i) => {
      if (keep[i]) expect(c.copyFrom(d, i)).toBe(i / 4);
    });
    words.forEach((w, i) => expect(c.get(w)).toBe(keep[i] ? i / 4 : -1));
    // Compact: the characters exactly, no growth on the way.
    expect(c.byteLength).toBeLessThan(d.byteLength);
  });
});
