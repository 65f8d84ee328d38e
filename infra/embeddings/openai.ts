import OpenAI, { APIError } from 'openai';
import type { Embedder } from '../../services/core/ports';
import { toUpstreamError, UpstreamModelError, type CutShort } from '../llm/openaiAnswerer';
import { approximateTokenCount } from './hashing';

export interface OpenAIEmbedderOptions {
  baseURL: string;
  apiKey: string;
  model: string;
  /** Asks the server for this width (text-embedding-3-*); otherwise the model's own width is used. */
  dimensions?: number;
  timeoutMs?: number;
  maxRetries?: number;
}

/** Inputs per request: far below OpenAI's 2048, and small enough for Ollama/TEI defaults. */
const INPUTS_PER_REQUEST = 64;
const CONCURRENT_REQUESTS = 4;

/**
 * Longest input sent before the server refused one as too long: the longest query (8,000
 * characters, about 2,000 tokens) fits OpenAI's 8,191-token window whole. Servers of smaller
 * models (TEI, Ollama, vLLM with a 512-token model) refuse such inputs instead of truncating; the
 * embedder then halves the limit until they accept, and keeps it.
 */
const INITIAL_INPUT_CHARS = 8_000;
/** Below this the refusal is not about length (every chunk and most queries are longer). */
const MIN_INPUT_CHARS = 256;
/** What servers say when an input exceeds their window (OpenAI, vLLM, TEI, Ollama wordings). */
const TOO_LONG = /context length|maximum context|too long|too many tokens|less than \d+ tokens|exceeds|max(imum)?[_ ]?(input|tokens|length)/i;

function refusedAsTooLong(err: unknown): boolean {
  const cause = err instanceof UpstreamModelError ? err.cause : err;
  return cause instanceof APIError && typeof cause.status === 'number' && [400, 413, 422, 500].includes(cause.status) && TOO_LONG.test(cause.message);
}

/** The first `limit` characters, cut back to a word boundary when there is one nearby. */
export function truncateInput(text: string, limit: number): string {
  if (text.length <= limit) return text;
  let cut = text.slice(0, limit);
  // Never leave half a surrogate pair.
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);
  const space = cut.search(/\s\S*$/);
  return space > limit * 0.8 ? cut.slice(0, space) : cut;
}

function normalise(values: ArrayLike<number>): Float32Array {
  const vector = Float32Array.from(values as ArrayLike<number>);
  let norm = 0;
  for (let i = 0; i < vector.length; i++) norm += vector[i]! * vector[i]!;
  if (norm > 0) {
    const scale = 1 / Math.sqrt(norm);
    for (let i = 0; i < vector.length; i++) vector[i] = vector[i]! * scale;
  }
  return vector;
}

/**
 * Embeddings from any OpenAI-compatible server (OpenAI, Ollama, vLLM, TEI). One call at creation
 * learns the width, so a misconfigured server fails at start-up rather than at the first upload.
 * Vectors are L2-normalised here: not every compatible server normalises. Failures surface as
 * UpstreamModelError (502, or 504 on timeout).
 */
export async function createOpenAIEmbedder(opts: OpenAIEmbedderOptions): Promise<Embedder> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const client = new OpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey, timeout: timeoutMs, maxRetries: opts.maxRetries ?? 2 });
  const what = `embedding server ${opts.model}`;

  async function request(input: string[]): Promise<Float32Array[]> {
    const controller = new AbortController();
    let cutShort: CutShort = null;
    // The client's own timeout is per attempt; this one bounds the attempts together.
    const deadline = setTimeout(() => {
      cutShort = 'deadline';
      controller.abort();
    }, timeoutMs);
    try {
      const response = await client.embeddings.create(
        {
          model: opts.model,
          input,
          // Explicit: the client otherwise asks for base64, which some compatible servers lack.
          encoding_format: 'float',
          ...(opts.dimensions ? { dimensions: opts.dimensions } : {}),
        },
        { signal: controller.signal },
      );
      const vectors = new Array<Float32Array>(input.length);
      for (const item of response.data) vectors[item.index] = normalise(item.embedding);
      if (vectors.some((v) => v === undefined) || response.data.length !== input.length) {
        throw new Error(`returned ${response.data.length} embeddings for ${input.length} inputs`);
      }
      return vectors;
    } catch (err) {
      throw toUpstreamError(err, cutShort, what, timeoutMs);
    } finally {
      clearTimeout(deadline);
    }
  }

  /** Current cut (characters per input); only ever shrinks, shared by concurrent requests. */
  let inputChars = INITIAL_INPUT_CHARS;
  /** Embeds inputs cut to the server's window: the embedding reads the start of a long text. */
  async function requestTruncated(input: string[]): Promise<Float32Array[]> {
    for (;;) {
      const limit = inputChars;
      const cut = input.map((t) => truncateInput(t, limit));
      try {
        return await request(cut);
      } catch (err) {
        const longest = cut.reduce((n, t) => Math.max(n, t.length), 0);
        if (!refusedAsTooLong(err) || longest <= MIN_INPUT_CHARS) throw err;
        inputChars = Math.min(inputChars, Math.max(MIN_INPUT_CHARS, Math.floor(longest / 2)));
      }
    }
  }

  const [probe] = await request(['dimension probe']);
  const dimensions = probe!.length;
  if (opts.dimensions && dimensions !== opts.dimensions) {
    throw new Error(`${what} returned ${dimensions}-dimensional vectors, configured for ${opts.dimensions}`);
  }

  return {
    id: `openai:${opts.model}`,
    dimensions,
    semantic: true,
    async embed(texts) {
      const out = new Array<Float32Array>(texts.length);
      const starts: number[] = [];
      for (let i = 0; i < texts.length; i += INPUTS_PER_REQUEST) starts.push(i);
      let next = 0;
      const lane = async () => {
        while (next < starts.length) {
          const start = starts[next++]!;
          const vectors = await requestTruncated(texts.slice(start, start + INPUTS_PER_REQUEST));
          vectors.forEach((v, j) => {
            if (v.length !== dimensions) throw new Error(`${what} changed width from ${dimensions} to ${v.length}`);
            out[start + j] = v;
          });
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONCURRENT_REQUESTS, starts.length) }, lane));
      return out;
    },
    // The server's tokenizer is unknown here; the WordPiece estimate is close for BPE models too.
    countTokens: approximateTokenCount,
    tokenCounter: { kind: 'approximate' },
    async close() {},
  };
}
