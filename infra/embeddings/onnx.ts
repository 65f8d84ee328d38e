import nodeModule from 'node:module';
import { join } from 'node:path';
import type { Embedder } from '../../services/core/ports';

/** What worker.js (plain CommonJS, shared with the worker threads) exports; typed here once. */
export interface OnnxCore {
  readonly id: string;
  readonly sha256: string;
  readonly dimensions: number;
  readonly maxTokens: number;
  /** Embeds one batch in the given order; flat rows x dims, L2-normalised rows. */
  embedBatch(texts: string[]): Promise<{ vectors: Float32Array; dims: number }>;
  /** Runs pre-tokenised ids (benchmarks measure the runtime alone with it). */
  runIds(batchIds: number[][]): Promise<{ vectors: Float32Array; dims: number }>;
  /** Token ids with [CLS]/[SEP], truncated to maxTokens. */
  encode(text: string): number[];
  countTokens(text: string): number;
  close(): Promise<void>;
}

export interface OnnxCoreModule {
  loadOnnxCore(opts: { modelDir: string; threads?: number; verify?: boolean }): Promise<OnnxCore | null>;
  loadTokenizer(modelDir: string): { tokenizer: { tokenize(text: string): string[] } };
  modelFilesPresent(modelDir: string): boolean;
  readModel(modelDir: string, verify: boolean): { id: string; sha256: string; maxTokens: number; dimensions: number | null };
}

/**
 * Loaded by Node's own loader, not by the importing module's `require`: jest runs modules in a vm
 * context whose Float32Array is not the one onnxruntime's native binding creates, so
 * onnxruntime-common's `instanceof` checks reject every output tensor ("A float32 tensor's data
 * must be type of function Float32Array()"). Jest's `module` shim replaces createRequire but
 * inherits Node's `Module._load`, which loads into the main realm. Under tsx and node this is
 * exactly what `require('./worker.js')` does.
 */
type NodeLoader = { _load?: (request: string, parent: null, isMain: boolean) => unknown };
const loadModule = (nodeModule as unknown as NodeLoader)._load;
const WORKER_JS = join(__dirname, 'worker.js');
export const onnxCore = (loadModule ? loadModule(WORKER_JS, null, false) : nodeModule.createRequire(__filename)(WORKER_JS)) as OnnxCoreModule;

export const DEFAULT_BATCH_SIZE = 16;

/**
 * Splits texts into batches of similar length (less padding, and int8 vectors shift less with batch
 * composition), remembering each text's place. Deterministic: equal input gives equal batches.
 */
export function planBatches(texts: readonly string[], batchSize: number): number[][] {
  const order = texts.map((_, i) => i).sort((a, b) => texts[a]!.length - texts[b]!.length || a - b);
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return batches;
}

/** Scatters flat rows x dims results of `batch` back into `out` at the texts' original places. */
export function scatterRows(out: Float32Array[], batch: readonly number[], flat: Float32Array, dims: number): void {
  batch.forEach((textIndex, row) => {
    out[textIndex] = flat.slice(row * dims, (row + 1) * dims);
  });
}

/**
 * all-MiniLM-L6-v2 (int8 or fp32 ONNX) in this thread. Null when the model files are missing;
 * throws when they are present but corrupt (checksum, JSON, ONNX). The sha256 of model.onnx is
 * checked against model.json at every load (60-200 ms for 23 MB).
 * In the API process use createEmbedderPool (pool.ts): inference here blocks the event loop.
 */
export async function loadOnnxEmbedder(opts: { modelDir: string; threads?: number; batchSize?: number }): Promise<Embedder | null> {
  const core = await onnxCore.loadOnnxCore({ modelDir: opts.modelDir, threads: opts.threads ?? 1, verify: true });
  if (!core) return null;
  const batchSize = Math.max(1, opts.batchSize ?? DEFAULT_BATCH_SIZE);
  return {
    id: core.id,
    dimensions: core.dimensions,
    semantic: true,
    async embed(texts) {
      const out = new Array<Float32Array>(texts.length);
      for (const batch of planBatches(texts, batchSize)) {
        const { vectors, dims } = await core.embedBatch(batch.map((i) => texts[i]!));
        scatterRows(out, batch, vectors, dims);
      }
      return out;
    },
    countTokens: (text) => core.countTokens(text),
    close: () => core.close(),
  };
}
