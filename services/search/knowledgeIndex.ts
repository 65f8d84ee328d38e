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
}

export interface KnowledgeIndex {
  readonly kind: 'embedded' | 'weaviate';
  ensureTenant(tenantId: string): Promise<void>;
  dropTenant(tenantId: string): Promise<void>;
  /** Writes one batch of a document version's chunks; invisible to search until activate(). */
  stageChunks(tenantId: string, documentId: string, version: number, embedderId: string, chunks: IndexedChunk[]): Promise<void>;
  /**
   * Makes `version` the searchable one and drops every other version's chunks. Returns false
   * (and discards the staged chunks) when a newer version or a delete arrived meanwhile.
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
  /** Embedder ids of the vectors a tenant holds (more than one means a re-embedding is due). */
  embedderIds(tenantId: string): Promise<string[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
