import { Index, MetricKind, ScalarKind } from 'usearch';

/**
 * An HNSW graph (usearch, https://github.com/unum-cloud/usearch) over one tenant's vectors, for the
 * embedded index's large tenants (infra/vectors/embedded.ts). The graph only finds candidates:
 * the caller keeps the vectors (Float32Array per document) and scores the candidates exactly, so
 * a score never differs from the exact scan's.
 *
 * Keys are this graph's own sequence numbers, a document's rows taking consecutive keys; a key maps
 * back to (owner, row). Removing an owner marks its keys removed in usearch (searches skip them;
 * the memory stays until the graph is rebuilt, see `dead`).
 *
 * Memory: usearch holds, per reserved slot, the vector (dims x 4 bytes, f32) and its level-0
 * neighbour list (2 x connectivity x 4 bytes) plus node headers and upper levels (about 48 bytes
 * with connectivity 16); measured RSS 1,878 bytes a 384-d vector against 1,880 from
 * capacity x (384 x 4 + 2 x 16 x 4 + 48). Add 16 bytes a key for the key -> (owner, row) maps.
 */
export interface HnswParams {
  /** Neighbours per node (M). */
  connectivity: number;
  /** Candidate list while inserting (efConstruction). */
  expansionAdd: number;
  /** Candidate list while searching (ef); a search for k > this uses k. */
  expansionSearch: number;
}

export const HNSW_DEFAULTS: HnswParams = { connectivity: 16, expansionAdd: 64, expansionSearch: 128 };

export interface HnswOwner {
  dims: number;
  /** Row-major, rows x dims. */
  vectors: Float32Array;
}

export class HnswGraph<T extends HnswOwner> {
  private readonly index: Index;
  private readonly params: HnswParams;
  private keyOwner: (T | null)[] = [];
  private keyRow = new Int32Array(0);
  /** Per owner: its reserved key range's start and how many of its rows are in the graph. */
  private readonly owners = new Map<T, { from: number; added: number }>();
  private nextKey = 0;
  /** Rows searchable (added, not removed). */
  live = 0;
  /** Rows removed but still holding memory in the graph. */
  dead = 0;
  private closed = false;

  constructor(
    readonly dims: number,
    params: Partial<HnswParams> = {},
  ) {
    this.params = { ...HNSW_DEFAULTS, ...params };
    this.index = new Index({
      dimensions: dims,
      metric: MetricKind.IP,
      quantization: ScalarKind.F32,
      connectivity: this.params.connectivity,
      expansion_add: this.params.expansionAdd,
      expansion_search: this.params.expansionSearch,
      multi: false,
    });
  }

  /** True when every row of the owner is in the graph (or it can never be: other dims, no rows). */
  complete(owner: T): boolean {
    const rows = owner.dims === this.dims ? owner.vectors.length / this.dims : 0;
    return (this.owners.get(owner)?.added ?? 0) >= rows;
  }

  /**
   * Adds the owner's rows up to `upto` (all by default; synchronous, about 0.2 ms a 384-d row on
   * these cores, so a background build adds a large owner in several calls). The owner's key range
   * is reserved on its first call, so other owners may be added in between.
   */
  add(owner: T, upto?: number): void {
    if (this.closed || owner.dims !== this.dims) return;
    const rows = owner.vectors.length / this.dims;
    if (!Number.isInteger(rows) || rows === 0) return;
    let entry = this.owners.get(owner);
    if (!entry) {
      entry = { from: this.nextKey, added: 0 };
      this.nextKey += rows;
      if (this.keyRow.length < this.nextKey) {
        let cap = Math.max(1024, this.keyRow.length);
        while (cap < this.nextKey) cap *= 2;
        const grown = new Int32Array(cap);
        grown.set(this.keyRow);
        this.keyRow = grown;
      }
      for (let i = 0; i < rows; i++) {
        this.keyOwner[entry.from + i] = owner;
        this.keyRow[entry.from + i] = i;
      }
      this.owners.set(owner, entry);
    }
    const end = Math.min(rows, upto ?? rows);
    if (end <= entry.added) return;
    const keys = new BigUint64Array(end - entry.added);
    for (let i = 0; i < keys.length; i++) keys[i] = BigInt(entry.from + entry.added + i);
    this.index.add(keys, owner.vectors.subarray(entry.added * this.dims, end * this.dims), 1);
    this.live += end - entry.added;
    entry.added = end;
  }

  remove(owner: T): void {
    const entry = this.owners.get(owner);
    if (!entry || this.closed) return;
    this.owners.delete(owner);
    const rows = owner.vectors.length / this.dims;
    for (let i = 0; i < rows; i++) this.keyOwner[entry.from + i] = null;
    if (entry.added > 0) {
      const keys = new BigUint64Array(entry.added);
      for (let i = 0; i < entry.added; i++) keys[i] = BigInt(entry.from + i);
      this.index.remove(keys);
    }
    this.live -= entry.added;
    this.dead += entry.added;
  }

  /** Up to k nearest rows by inner product (cosine for unit vectors), best first; null once closed. */
  search(query: Float32Array, k: number): { owner: T; row: number }[] | null {
    if (this.closed) return null;
    if (this.live === 0 || query.length !== this.dims) return [];
    const m = this.index.search(query, Math.min(k, this.live), 1);
    const out: { owner: T; row: number }[] = [];
    for (let i = 0; i < m.keys.length; i++) {
      const key = Number(m.keys[i]!);
      const owner = this.keyOwner[key];
      if (owner) out.push({ owner, row: this.keyRow[key]! });
    }
    return out;
  }

  /** Estimated bytes (see the header): usearch's reserved slots plus the key maps. */
  get bytes(): number {
    if (this.closed) return 0;
    const perSlot = this.dims * 4 + 2 * this.params.connectivity * 4 + 48;
    return this.index.capacity() * perSlot + this.keyRow.byteLength + this.keyOwner.length * 8 + this.owners.size * 96;
  }

  /** Drops the references (usearch frees its memory when the Index is collected). */
  close(): void {
    this.closed = true;
    this.keyOwner = [];
    this.keyRow = new Int32Array(0);
    this.owners.clear();
    this.live = 0;
    this.dead = 0;
  }
}
