import { resolve } from 'node:path';
import type { Embedder } from '../../services/core/ports';
import { createHashingEmbedder } from './hashing';
import { loadOnnxEmbedder } from './onnx';
import { createOpenAIEmbedder, type OpenAIEmbedderOptions } from './openai';
import { createEmbedderPool } from './pool';

export { createHashingEmbedder } from './hashing';
export { loadOnnxEmbedder } from './onnx';
export { createOpenAIEmbedder } from './openai';
export { createEmbedderPool } from './pool';

export interface EmbedderConfig {
  /** Set when an OpenAI-compatible embedding server is configured; it then wins. */
  openai?: OpenAIEmbedderOptions;
  /** Directory holding model.onnx, tokenizer.json and model.json (npm run models:fetch). */
  modelDir: string;
  /** Worker threads for local inference; 0 runs it in this thread (scripts and benchmarks only). */
  workers: number;
  /** onnxruntime intra-op threads per worker. */
  threads: number;
  batchSize: number;
  log: (level: 'info' | 'warn', msg: string) => void;
}

/**
 * Picks the embedder: an OpenAI-compatible server when configured (a failure to reach it at start
 * is an error, not a silent downgrade), else all-MiniLM-L6-v2 on worker threads when its files are
 * present (corrupt files are an error), else the lexical hashing fallback with `degraded` set to a
 * message for /ready and the start-up log.
 */
export async function createEmbedder(config: EmbedderConfig): Promise<{ embedder: Embedder; degraded: string | null }> {
  if (config.openai) {
    const embedder = await createOpenAIEmbedder(config.openai);
    config.log('info', `embeddings: ${embedder.id} at ${config.openai.baseURL} (${embedder.dimensions} dimensions)`);
    return { embedder, degraded: null };
  }

  const local =
    config.workers > 0
      ? await createEmbedderPool({ modelDir: config.modelDir, workers: config.workers, threadsPerWorker: config.threads, batchSize: config.batchSize })
      : await loadOnnxEmbedder({ modelDir: config.modelDir, threads: config.threads, batchSize: config.batchSize });
  if (local) {
    const where = config.workers > 0 ? `${config.workers} worker thread(s) x ${config.threads} thread(s)` : 'the main thread';
    config.log('info', `embeddings: ${local.id} on ${where}, batch ${config.batchSize}`);
    return { embedder: local, degraded: null };
  }

  const embedder = createHashingEmbedder(384);
  const degraded =
    `no embedding model found at ${resolve(config.modelDir)}; search is lexical only (${embedder.id}); ` +
    'run `npm run models:fetch` and restart to enable semantic search';
  config.log('warn', degraded);
  return { embedder, degraded };
}
