/**
 * Okapi BM25 over one tenant's chunks, in memory (the embedded profile's `keyword` mode).
 *
 * Text analysis is PostgreSQL's: a chunk's terms are the lexemes of its stored
 * `to_tsvector('english', text)` (Snowball stemming, the English stop list) with term frequency =
 * the lexeme's number of positions, and a query's terms come from the same function, so stemming
 * and stop words match exactly on both sides. Chunk length = the sum of its term frequencies.
 *
 *   score(q, c) = sum over query terms t:  qtf(t) * idf(t) * tf(t,c) * (k1 + 1) / (tf(t,c) + k1 * (1 - b + b * len(c) / avglen))
 *   idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))      (never negative, as Lucene's)
 *
 * N, df and avglen are over the tenant's searchable chunks. One instance per tenant: terms, postings
 * and statistics are never shared between tenants.
 *
 * Layout (memory ~5 bytes per posting plus ~13 bytes per chunk and ~20 bytes per term, in typed
 * arrays off the V8 heap): a term dictionary (TermDict); a main segment in compressed sparse rows
 * (per term id: ascending slots in an Int32Array, term frequencies in a Uint8Array, clamped at
 * 255); an append segment for chunks added since the last
 * merge (per term a JS array of slot * 256 + tf, 8 bytes a posting), merged when it outgrows
 * max(32k postings, main / 8) so merging is amortised linear (main / 1 during a bulk load);
 * and a tombstone per removed chunk (dropped, and slots renumbered, by the next merge once removed
 * chunks exceed a quarter of the slots). A document's chunks occupy consecutive slots.
 */

export interface Bm25Params {
  k1: number;
  b: number;
}

/** k1 1.2 and b 0.75: the customary defaults (Robertson & Zaragoza; Lucene, Anserini). */
export const BM25_DEFAULTS: Bm25Params = { k1: 1.2, b: 0.75 };

/** Lexeme -> term frequency, for one chunk or one query. */
export type TermCounts = Map<string, number>;

export interface Bm25Chunk {
  chunkIndex: number;
  terms: TermCounts;
}

export interface Bm25Hit {
  documentId: string;
  version: number;
  chunkIndex: number;
  score: number;
}

interface DocEntry {
  ord: number;
  version: number;
  start: number;
  count: number;
}

const MAX_TF = 255;
/** Estimated bytes of one document entry (see `bytes`). */
const DOC_BYTES = 160;
const MIN_DELTA_MERGE = 32_768;

function grow<T extends Int32Array | Uint8Array | Float64Array>(a: T, need: number): T {
  if (need <= a.length) return a;
  let cap = Math.max(16, a.length);
  while (cap < need) cap *= 2;
  const b = new (a.constructor as { new (n: number): T })(cap);
  b.set(a);
  return b;
}

const encoder = new TextEncoder();
let scratch = new Uint8Array(256);
/** The term's UTF-8 bytes in the shared scratch buffer (valid until the next call); returns their length. */
function encode(term: string): number {
  if (scratch.length < term.length * 3) scratch = new Uint8Array(term.length * 3);
  return encoder.encodeInto(term, scratch).written;
}
/** FNV-1a over bytes [from, to) of `b`. */
function fnv1a(b: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h | 0;
}

/**
 * One tenant's term dictionary (lexeme -> dense id, in order of first appearance) in typed arrays,
 * off the V8 heap: the terms' UTF-8 bytes end to end, each id's start offset and hash, and an
 * open-addressing table of ids. About 8 + bytes-of-the-term bytes a term plus a table of 2 to 4
 * slots a term, where a Map<string, number> costs ~70 bytes of heap a term: the dictionary is most
 * of a small tenant's keyword index, and keeping it out of the heap keeps V8's collector (whose heap
 * grows past what it keeps) out of the index's memory budget.
 */
export class TermDict {
  private chars: Uint8Array;
  private used = 0;
  private starts: Int32Array;
  private hashes: Int32Array;
  private table: Int32Array;
  private n = 0;

  constructor(capacity = 16, charCapacity = capacity * 8) {
    this.chars = new Uint8Array(Math.max(16, charCapacity));
    this.starts = new Int32Array(Math.max(16, capacity) + 1);
    this.hashes = new Int32Array(Math.max(16, capacity));
    let slots = 32;
    while (slots < capacity * 2) slots *= 2;
    this.table = new Int32Array(slots).fill(-1);
  }

  get size(): number {
    return this.n;
  }

  get byteLength(): number {
    return this.chars.byteLength + this.starts.byteLength + this.hashes.byteLength + this.table.byteLength;
  }

  /** The id of the term, or -1. */
  get(term: string): number {
    const len = encode(term);
    return this.find(scratch, 0, len, fnv1a(scratch, 0, len));
  }

  /** The id of the term, added with the next id if it is new. */
  intern(term: string): number {
    const len = encode(term);
    const h = fnv1a(scratch, 0, len);
    const id = this.find(scratch, 0, len, h);
    return id >= 0 ? id : this.append(scratch, 0, len, h);
  }

  /** UTF-8 bytes of the terms whose `keep[id]` is > 0 (to size a compacted copy). */
  charsOf(keep: Int32Array): number {
    let c = 0;
    for (let id = 0; id < this.n; id++) if (keep[id]! > 0) c += this.starts[id + 1]! - this.starts[id]!;
    return c;
  }

  /** Adds term `id` of `other` (absent here) with the next id. */
  copyFrom(other: TermDict, id: number): number {
    return this.append(other.chars, other.starts[id]!, other.starts[id + 1]!, other.hashes[id]!);
  }

  private find(b: Uint8Array, from: number, to: number, h: number): number {
    const mask = this.table.length - 1;
    const len = to - from;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const id = this.table[i]!;
      if (id < 0) return -1;
      if (this.hashes[id] !== h) continue;
      const at = this.starts[id]!;
      if (this.starts[id + 1]! - at !== len) continue;
      let k = 0;
      while (k < len && this.chars[at + k] === b[from + k]) k++;
      if (k === len) return id;
    }
  }

  private append(b: Uint8Array, from: number, to: number, h: number): number {
    const id = this.n++;
    const len = to - from;
    if (this.used + len > this.chars.length) this.chars = grow(this.chars, this.used + len);
    this.chars.set(b.subarray(from, to), this.used);
    this.used += len;
    if (id + 2 > this.starts.length) this.starts = grow(this.starts, id + 2);
    if (id + 1 > this.hashes.length) this.hashes = grow(this.hashes, id + 1);
    this.starts[id + 1] = this.used;
    this.hashes[id] = h;
    if (this.n * 2 > this.table.length) this.rehash(this.table.length * 2);
    else this.place(id);
    return id;
  }

  private place(id: number): void {
    const mask = this.table.length - 1;
    let i = this.hashes[id]! & mask;
    while (this.table[i]! >= 0) i = (i + 1) & mask;
    this.table[i] = id;
  }

  private rehash(slots: number): void {
    this.table = new Int32Array(slots).fill(-1);
    for (let id = 0; id < this.n; id++) this.place(id);
  }
}

export class Bm25Index {
  private readonly params: Bm25Params;
  // Terms
  private terms = new TermDict();
  // Main segment (CSR over term ids < mainTerms)
  private mainTerms = 0;
  private offsets = new Int32Array(1);
  private postSlots = new Int32Array(0);
  private postTfs = new Uint8Array(0);
  // Append segment: by term id, [slot * 256 + tf, ...] (slots ascending); deltaTerms lists the ids in use
  private delta: (number[] | undefined)[] = [];
  private deltaTerms: number[] = [];
  private deltaPostings = 0;
  // Slots (chunks)
  private slots = 0;
  private slotDoc = new Int32Array(0);
  private slotChunk = new Int32Array(0);
  private slotLen = new Int32Array(0);
  private alive = new Uint8Array(0);
  private deadSlots = 0;
  // Documents
  private docs = new Map<string, DocEntry>();
  private docIds: (string | null)[] = [];
  // Statistics over live slots
  private liveSlots = 0;
  private totalLen = 0;
  // Scratch for scoring (single-threaded: no await between use and reset)
  private acc = new Float64Array(0);

  constructor(params: Partial<Bm25Params> = {}) {
    this.params = { ...BM25_DEFAULTS, ...params };
  }

  /** Searchable chunks. */
  get size(): number {
    return this.liveSlots;
  }

  get documents(): number {
    return this.docs.size;
  }

  /**
   * Estimated bytes held: the typed arrays' byteLength (postings, slots, statistics, scoring
   * scratch, the term dictionary), 8 bytes a posting in the append segment (a JS array element)
   * and 40 bytes a list, and per document ~160 bytes of JS structures as V8 lays them out on 64-bit
   * without pointer compression (Node 20): its id string 56, entry object 48, map entry and id slot ~56.
   */
  get bytes(): number {
    return (
      this.offsets.byteLength + this.postSlots.byteLength + this.postTfs.byteLength + this.deltaPostings * 8 + this.deltaTerms.length * 40 +
      this.slotDoc.byteLength + this.slotChunk.byteLength + this.slotLen.byteLength + this.alive.byteLength + this.acc.byteLength +
      this.terms.byteLength + this.docIds.length * 8 + this.docs.size * DOC_BYTES
    );
  }

  /**
   * Makes `chunks` the searchable content of the document (replacing what it had). `bulk` (a load
   * of many documents) lets the append segment grow as large as the main one before merging;
   * call merge() at the end.
   */
  setDocument(documentId: string, version: number, chunks: Bm25Chunk[], opts: { bulk?: boolean } = {}): void {
    this.removeDocument(documentId);
    if (chunks.length === 0) return;
    const ord = this.docIds.length;
    this.docIds.push(documentId);
    const start = this.slots;
    const need = start + chunks.length;
    this.slotDoc = grow(this.slotDoc, need);
    this.slotChunk = grow(this.slotChunk, need);
    this.slotLen = grow(this.slotLen, need);
    this.alive = grow(this.alive, need);
    for (const ch of chunks) {
      const slot = this.slots++;
      let len = 0;
      for (const [term, tf] of ch.terms) {
        if (!(tf > 0)) continue;
        const id = this.terms.intern(term);
        let list = this.delta[id];
        if (!list) {
          this.delta[id] = list = [];
          this.deltaTerms.push(id);
        }
        list.push(slot * 256 + Math.min(tf, MAX_TF));
        this.deltaPostings++;
        len += tf;
      }
      this.slotDoc[slot] = ord;
      this.slotChunk[slot] = ch.chunkIndex;
      this.slotLen[slot] = len;
      this.alive[slot] = 1;
      this.liveSlots++;
      this.totalLen += len;
    }
    this.docs.set(documentId, { ord, version, start, count: chunks.length });
    // Incremental: a small append segment (cheap to search). Bulk: fewer, larger merges (~2 moves a posting).
    if (this.deltaPostings > Math.max(MIN_DELTA_MERGE, this.postSlots.length / (opts.bulk ? 1 : 8))) this.merge();
  }

  removeDocument(documentId: string): void {
    const doc = this.docs.get(documentId);
    if (!doc) return;
    this.docs.delete(documentId);
    this.docIds[doc.ord] = null;
    for (let s = doc.start; s < doc.start + doc.count; s++) {
      if (!this.alive[s]) continue;
      this.alive[s] = 0;
      this.deadSlots++;
      this.liveSlots--;
      this.totalLen -= this.slotLen[s]!;
    }
    if (this.deadSlots > Math.max(1024, this.slots / 4)) this.merge();
  }

  /** Top `k` chunks for the query (term -> query term frequency), best first; ties by document id, chunk. */
  search(query: TermCounts, k: number, filterDocumentId?: string): Bm25Hit[] {
    if (k <= 0 || this.liveSlots === 0) return [];
    let lo = 0;
    let hi = this.slots;
    if (filterDocumentId !== undefined) {
      const doc = this.docs.get(filterDocumentId);
      if (!doc) return [];
      lo = doc.start;
      hi = doc.start + doc.count;
    }
    const { k1, b } = this.params;
    const n = this.liveSlots;
    const avgLen = this.totalLen / n || 1;
    this.acc = grow(this.acc, this.slots);
    const acc = this.acc;
    const alive = this.alive;
    const slotLen = this.slotLen;
    const touched: number[] = [];
    // norm(slot) = k1 * (1 - b + b * len / avgLen) = base + scale * len
    const base = k1 * (1 - b);
    const scale = (k1 * b) / avgLen;
    for (const [term, qtf] of query) {
      const id = this.terms.get(term);
      if (id < 0 || !(qtf > 0)) continue;
      const df = this.documentFrequency(id);
      if (df <= 0) continue;
      const w = qtf * Math.log(1 + (n - df + 0.5) / (df + 0.5)) * (k1 + 1);
      if (id < this.mainTerms) {
        const slots = this.postSlots;
        const tfs = this.postTfs;
        const end = this.offsets[id + 1]!;
        for (let p = this.offsets[id]!; p < end; p++) {
          const slot = slots[p]!;
          if (slot < lo || slot >= hi || !alive[slot]) continue;
          const tf = tfs[p]!;
          if (acc[slot] === 0) touched.push(slot);
          acc[slot]! += (w * tf) / (tf + base + scale * slotLen[slot]!);
        }
      }
      const list = this.delta[id];
      if (list) {
        for (let p = 0; p < list.length; p++) {
          const v = list[p]!;
          const slot = Math.floor(v / 256);
          if (slot < lo || slot >= hi || !alive[slot]) continue;
          const tf = v - slot * 256;
          if (acc[slot] === 0) touched.push(slot);
          acc[slot]! += (w * tf) / (tf + base + scale * slotLen[slot]!);
        }
      }
    }
    // Bounded selection: a min-heap of the best k slots.
    const heap: number[] = [];
    const better = (x: number, y: number) => acc[x]! > acc[y]! || (acc[x] === acc[y] && this.tieBefore(x, y));
    for (const slot of touched) {
      if (heap.length < k) {
        heap.push(slot);
        let i = heap.length - 1;
        while (i > 0) {
          const parent = (i - 1) >> 1;
          if (!better(heap[parent]!, heap[i]!)) break;
          [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
          i = parent;
        }
      } else if (better(slot, heap[0]!)) {
        heap[0] = slot;
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < heap.length && better(heap[m]!, heap[l]!)) m = l;
          if (r < heap.length && better(heap[m]!, heap[r]!)) m = r;
          if (m === i) break;
          [heap[m], heap[i]] = [heap[i]!, heap[m]!];
          i = m;
        }
      }
    }
    heap.sort((x, y) => (better(x, y) ? -1 : better(y, x) ? 1 : 0));
    const out = heap.map((slot) => {
      const documentId = this.docIds[this.slotDoc[slot]!]!;
      return { documentId, version: this.docs.get(documentId)!.version, chunkIndex: this.slotChunk[slot]!, score: acc[slot]! };
    });
    for (const slot of touched) acc[slot] = 0;
    return out;
  }

  private tieBefore(x: number, y: number): boolean {
    const dx = this.docIds[this.slotDoc[x]!]!;
    const dy = this.docIds[this.slotDoc[y]!]!;
    return dx < dy || (dx === dy && this.slotChunk[x]! < this.slotChunk[y]!);
  }

  /** Live chunks holding the term: the postings' count, less removed chunks awaiting a merge. */
  private documentFrequency(id: number): number {
    const list = this.delta[id];
    const inMain = id < this.mainTerms;
    if (this.deadSlots === 0) return (inMain ? this.offsets[id + 1]! - this.offsets[id]! : 0) + (list ? list.length : 0);
    let df = 0;
    if (inMain) {
      const end = this.offsets[id + 1]!;
      for (let p = this.offsets[id]!; p < end; p++) df += this.alive[this.postSlots[p]!]!;
    }
    if (list) for (let p = 0; p < list.length; p++) df += this.alive[Math.floor(list[p]! / 256)]!;
    return df;
  }

  /**
   * Folds the append segment into the main one and drops removed chunks: slots are renumbered in
   * order (documents stay contiguous) and terms no live chunk holds are forgotten.
   */
  merge(): void {
    // Slot renumbering.
    const newSlot = new Int32Array(this.slots);
    let live = 0;
    for (let s = 0; s < this.slots; s++) newSlot[s] = this.alive[s] ? live++ : -1;
    // Term renumbering: keep terms some live chunk holds.
    const oldTerms = this.terms.size;
    const dfs = new Int32Array(oldTerms);
    for (let t = 0; t < oldTerms; t++) dfs[t] = this.documentFrequency(t);
    const newTerm = new Int32Array(oldTerms);
    let kept = 0;
    for (let id = 0; id < oldTerms; id++) if (dfs[id]! > 0) kept++;
    const dict = new TermDict(kept, this.terms.charsOf(dfs));
    for (let id = 0; id < oldTerms; id++) newTerm[id] = dfs[id]! > 0 ? dict.copyFrom(this.terms, id) : -1;
    const terms = dict.size;
    const offsets = new Int32Array(terms + 1);
    for (let t = 0; t < oldTerms; t++) if (newTerm[t]! >= 0) offsets[newTerm[t]! + 1] = dfs[t]!;
    for (let t = 0; t < terms; t++) offsets[t + 1] = offsets[t]! + offsets[t + 1]!;
    const total = offsets[terms]!;
    const postSlots = new Int32Array(total);
    const postTfs = new Uint8Array(total);
    const fill = new Int32Array(terms);
    const put = (t: number, slot: number, tf: number) => {
      const nt = newTerm[t]!;
      const ns = newSlot[slot]!;
      if (nt < 0 || ns < 0) return;
      const at = offsets[nt]! + fill[nt]!++;
      postSlots[at] = ns;
      postTfs[at] = tf;
    };
    // Main postings precede the append segment's (lower slots), so lists stay ascending.
    for (let t = 0; t < this.mainTerms; t++) {
      const end = this.offsets[t + 1]!;
      for (let p = this.offsets[t]!; p < end; p++) put(t, this.postSlots[p]!, this.postTfs[p]!);
    }
    for (const t of this.deltaTerms) {
      const list = this.delta[t]!;
      for (let p = 0; p < list.length; p++) {
        const slot = Math.floor(list[p]! / 256);
        put(t, slot, list[p]! - slot * 256);
      }
    }
    // Slot arrays.
    const slotDoc = new Int32Array(live);
    const slotChunk = new Int32Array(live);
    const slotLen = new Int32Array(live);
    const alive = new Uint8Array(live).fill(1);
    const docIds: string[] = [];
    const ordMap = new Map<number, number>();
    for (let s = 0; s < this.slots; s++) {
      const ns = newSlot[s]!;
      if (ns < 0) continue;
      const oldOrd = this.slotDoc[s]!;
      let ord = ordMap.get(oldOrd);
      if (ord === undefined) {
        ord = docIds.length;
        ordMap.set(oldOrd, ord);
        docIds.push(this.docIds[oldOrd]!);
      }
      slotDoc[ns] = ord;
      slotChunk[ns] = this.slotChunk[s]!;
      slotLen[ns] = this.slotLen[s]!;
    }
    for (const entry of this.docs.values()) {
      entry.start = newSlot[entry.start]!;
      entry.ord = ordMap.get(entry.ord)!;
    }
    this.terms = dict;
    this.mainTerms = terms;
    this.offsets = offsets;
    this.postSlots = postSlots;
    this.postTfs = postTfs;
    this.delta = [];
    this.deltaTerms = [];
    this.deltaPostings = 0;
    this.slots = live;
    this.slotDoc = slotDoc;
    this.slotChunk = slotChunk;
    this.slotLen = slotLen;
    this.alive = alive;
    this.deadSlots = 0;
    this.docIds = docIds;
    this.acc = new Float64Array(0);
  }
}

/**
 * Parses PostgreSQL's text output of a tsvector (`'lexeme':1,5B 'other':2`) into term counts
 * (number of positions; 1 for a lexeme stored without positions). Lexemes are quoted with `'`,
 * and `'` and `\` inside them are doubled.
 */
export function parseTsvector(s: string): TermCounts {
  const out: TermCounts = new Map();
  const n = s.length;
  let i = 0;
  let slash = s.indexOf('\\'); // the next backslash at or after i (-1: none)
  while (i < n) {
    if (s.charCodeAt(i) === 32 /* space */) {
      i++;
      continue;
    }
    if (s.charCodeAt(i) !== 39 /* ' */) throw new Error(`not a tsvector at ${i}: ${s.slice(i, i + 20)}`);
    const from = i + 1;
    let lex: string;
    // Fast path: no quote or backslash inside the lexeme.
    const close = s.indexOf("'", from);
    if (close < 0) throw new Error('unterminated lexeme in tsvector');
    if (slash >= 0 && slash < from) slash = s.indexOf('\\', from);
    if (s.charCodeAt(close + 1) !== 39 && (slash < 0 || slash > close)) {
      lex = s.slice(from, close);
      i = close + 1;
    } else {
      lex = '';
      i = from;
      for (;;) {
        if (i >= n) throw new Error('unterminated lexeme in tsvector');
        const c = s[i]!;
        if (c === "'" && s[i + 1] !== "'") {
          i++;
          break;
        }
        if (c === "'" || c === '\\') {
          // A doubled quote, or a backslash escaping the next character.
          lex += s[i + 1] ?? '';
          i += 2;
          continue;
        }
        lex += c;
        i++;
      }
    }
    let count = 1;
    if (s.charCodeAt(i) === 58 /* : */) {
      i++;
      while (i < n && s.charCodeAt(i) !== 32) {
        if (s.charCodeAt(i) === 44 /* , */) count++;
        i++;
      }
    }
    // PostgreSQL's output holds each lexeme once (sorted); add up anyway for hand-written input.
    const seen = out.get(lex);
    out.set(lex, seen === undefined ? count : seen + count);
  }
  return out;
}
