/** The port behind search: chunks with their vectors, per tenant, searchable by keyword and vector. */
export interface IndexedChunk {
  chunkIndex: number;
  text: string;
  headingPath: string[];
  page: number | null;
  tokenCount: number;
  vector: Float32Array;
}

export interface Candidate {
  documentId: string;
  version: number;
  chunkIndex: number;
  score: number;
  /** The embedder whose chunk set the candidate comes from (a document may hold two during a re-embedding). */
  embedderId?: string;
}

export interface Hit extends Candidate {
  text: string;
  filename: string;
  headingPath: string[];
  page: number | null;
}

export interface SearchScope {
  topK: number;
  documentId?: string;
  /**
   * The tenant's serving embedder: keyword and vector rankings read only its chunk sets, so one
   * search never mixes two models. Unset: the index's default (the configured embedder).
   */
  embedderId?: string;
  /**
   * Keyword-only fallback set for documents that have no set of the serving embedder (uploaded
   * during a re-embedding whose old embedder can no longer be loaded). Never used for vectors.
   */
  fallbackEmbedderId?: string | null;
}

/** What an index holds in this process (GET /v1/admin/projections `index`, /metrics). */
export interface IndexStats {
  kind: 'embedded' | 'weaviate';
  /** Tenants whose vectors and postings are in memory. */
  tenantsLoaded: number;
  /** Vector rows of the loaded tenants. */
  chunksLoaded?: number;
  /** Estimated bytes of the loaded tenants (vectors, postings, graphs). */
  bytes: number;
  /** The memory budget (INDEX_MEMORY_MB) in bytes; null: unbounded. */
  budgetBytes: number | null;
  /** Tenants evicted (least recently searched first) to stay within the budget, since start. */
  evictions: number;
  /** Tenant loads from PostgreSQL (first search, or after an eviction), since start. */
  loads?: number;
  /** Loaded tenants searched through an HNSW graph, and graphs being built. */
  hnswTenants?: number;
  hnswBuilding?: number;
  /** Vectors a tenant needs for an HNSW graph (INDEX_HNSW_MIN_CHUNKS; 0: never). */
  hnswMinChunks?: number;
  /** Vector searches answered through a graph (the others scanned exactly), since start. */
  hnswSearches?: number;
}

export interface KnowledgeIndex {
  readonly kind: 'embedded' | 'weaviate';
  ensureTenant(tenantId: string): Promise<void>;
  dropTenant(tenantId: string): Promise<void>;
  /** Writes one batch of a document version's chunks; invisible to search until activate(). */
  stageChunks(tenantId: string, documentId: string, version: number, embedderId: string, chunks: IndexedChunk[]): Promise<void>;
  /**
   * Records `info.embedderId`'s chunk set of `version` as complete. When `version` is not yet the
   * ready one it becomes so (with this set only) and every other version's chunks are dropped;
   * when it already is (a re-embedding), the set is added beside the served ones and nothing is
   * dropped. Returns false (and discards the staged chunks) when a newer version or a delete arrived.
   */
  activate(tenantId: string, documentId: string, version: number, info: { chunkCount: number; embedderId: string; format: string }): Promise<boolean>;
  /** Forget a deleted document (rows are removed by the catalog projection). */
  forgetDocument(tenantId: string, documentId: string): Promise<void>;
  keyword(tenantId: string, query: string, scope: SearchScope): Promise<Candidate[]>;
  vector(tenantId: string, vector: Float32Array, scope: SearchScope): Promise<Candidate[]>;
  /** One-call fusion where the engine offers it (Weaviate); otherwise search.ts fuses keyword and vector. */
  hybrid?(tenantId: string, query: string, vector: Float32Array, scope: SearchScope): Promise<Candidate[]>;
  /** Text and provenance of candidates, in the given order; candidates no longer present are dropped. */
  hydrate(tenantId: string, candidates: Candidate[]): Promise<Hit[]>;
  /** Drops every chunk set of one embedder (after the tenant switched away from it). */
  dropEmbedderSets(tenantId: string, embedderId: string): Promise<void>;
  /** Embedder ids of the vectors a tenant holds (more than one means a re-embedding is due). */
  embedderIds(tenantId: string): Promise<string[]>;
  ping(): Promise<void>;
  /** In-process memory figures, where the adapter holds any (the embedded index); optional. */
  stats?(): IndexStats | null;
  close(): Promise<void>;
}
