/** Small ports of the core; adapters live in infra/. */

export interface Embedder {
  /** Stable id recorded with every stored vector, e.g. `minilm-l6-v2-q@sha256:ab12..` or `hashing-v1-384`. */
  readonly id: string;
  readonly dimensions: number;
  /** True for a real semantic model; false for the lexical hashing fallback. */
  readonly semantic: boolean;
  /** Returns one L2-normalised vector per text, in order. */
  embed(texts: string[], purpose: 'query' | 'passage'): Promise<Float32Array[]>;
  /** Number of model tokens in a text (used to size chunks). */
  countTokens(text: string): number;
  /**
   * How countTokens counts, for code that counts on another thread (services/documents/prepare.ts
   * chunks in a worker): the WordPiece tokenizer of a model directory, or the approximate count.
   * Absent: only countTokens, on this thread, can count.
   */
  readonly tokenCounter?: TokenCounterSpec;
  close(): Promise<void>;
}

export type TokenCounterSpec = { kind: 'wordpiece'; modelDir: string } | { kind: 'approximate' };

export interface Passage {
  documentId: string;
  filename: string;
  chunkIndex: number;
  text: string;
  score: number;
  headingPath?: string[];
  page?: number | null;
}

export interface AnswerRequest {
  question: string;
  passages: Passage[];
  signal?: AbortSignal;
}

export interface Answer {
  answer: string;
  /** `extractive` offline, `generative` through an OpenAI-compatible model. */
  mode: 'extractive' | 'generative';
  model: string;
  /** Indexes (1-based, as cited `[n]`) of the passages the answer cites. */
  citations: number[];
  /** Citations the model produced that pointed at no passage and were removed. */
  removedCitations: number;
  usage?: { promptTokens: number; completionTokens: number };
}

export interface Answerer {
  readonly id: string;
  answer(req: AnswerRequest): Promise<Answer>;
  /** Streams answer tokens, then resolves with the whole answer. */
  stream(req: AnswerRequest, onToken: (token: string) => void): Promise<Answer>;
}
