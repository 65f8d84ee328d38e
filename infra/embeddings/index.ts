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
  /**
   * EMBEDDER: `auto` (default: the order below) or `hashing` / `hashing:<dimensions>` to force the
   * lexical hashing embedder (tests of re-embedding; machines that must not load a model).
   */
  choice?: string;
  log: (level: 'info' | 'warn', msg: string) => void;
}

/** Parses EMBEDDER; returns the forced hashing dimensions, or null for `auto`. */
export function forcedHashingDimensions(choice: string | undefined): number | null {
  if (!choice || choice === 'auto') return null;
  const m = /^hashing(?::(\d+))?$/.exec(choice);
  if (!m) throw new Error(`EMBEDDER must be auto, hashing or hashing:<dimensions>, got ${JSON.stringify(choice)}`);
  return m[1] ? Number(m[1]) : 384;
}

/**
 * Picks the embedder: an OpenAI-compatible server when configured (a failure to reach it at start
 * is an error, not a silent downgrade), else all-MiniLM-L6-v2 on worker threads when its files are
 * present (corrupt files are an error), else the lexical hashing fallback with `degraded` set to a
 * message for /ready and the start-up log.
 */
export async function createEmbedder(config: EmbedderConfig): Promise<{ embedder: Embedder; degraded: string | null }> {
  const forced = forcedHashingDimensions(config.choice);
  if (forced !== null) {
    const embedder = createHashingEmbedder(forced);
    config.log('warn', `embeddings: ${embedder.id} (EMBEDDER=${config.choice}); search is lexical only`);
    return { embedder, degraded: `EMBEDDER=${config.choice}: search is lexical only (${embedder.id})` };
  }
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

/**
 * The embedders this process can use: the configured one, and on demand an earlier one that a
 * tenant still serves during a re-embedding, when it can still be loaded: the hashing embedder
 * always, the ONNX model when its files (with the same checksum) are there, an OpenAI-compatible
 * model when a server is configured. `get` answers null for one that cannot be loaded; the
 * tenant then answers with keyword results over its old chunks until it switches.
 */
export interface EmbedderRegistry {
  readonly current: Embedder;
  get(embedderId: string): Promise<Embedder | null>;
  /** Dimensions of an embedder loaded in this process (or parsed from a hashing id), else null. */
  dimensionsOf(embedderId: string): number | null;
  close(): Promise<void>;
}

export function createEmbedderRegistry(current: Embedder, config: EmbedderConfig): EmbedderRegistry {
  const loaded = new Map<string, Promise<Embedder | null>>([[current.id, Promise.resolve(current)]]);
  const dims = new Map<string, number>([[current.id, current.dimensions]]);

  async function load(id: string): Promise<Embedder | null> {
    const hashing = /^hashing-v1-(\d+)$/.exec(id);
    if (hashing) return createHashingEmbedder(Number(hashing[1]));
    if (id.startsWith('openai:')) {
      if (!config.openai) return null;
      return createOpenAIEmbedder({ ...config.openai, model: id.slice('openai:'.length) });
    }
    // Otherwise a local ONNX model, identified by its checksum: only the same files will do.
    // Queries only (one worker, or this thread): the re-embedding runs on the current embedder.
    const local =
      config.workers > 0
        ? await createEmbedderPool({ modelDir: config.modelDir, workers: 1, threadsPerWorker: config.threads, batchSize: config.batchSize })
        : await loadOnnxEmbedder({ modelDir: config.modelDir, threads: config.threads, batchSize: config.batchSize });
    if (local && local.id !== id) {
      await local.close();
      return null;
    }
    return local;
  }

  return {
    current,
    get(id) {
      let p = loaded.get(id);
      if (!p) {
        p = load(id).then(
          (e) => {
            if (e) {
              dims.set(id, e.dimensions);
              config.log('info', `embeddings: loaded ${id} to serve tenants until their re-embedding switches`);
            } else config.log('warn', `embeddings: ${id} cannot be loaded; its tenants answer by keyword over their old chunks until they switch`);
            return e;
          },
          (err) => {
            config.log('warn', `embeddings: ${id} cannot be loaded (${(err as Error).message}); its tenants answer by keyword until they switch`);
            return null;
          },
        );
        loaded.set(id, p);
      }
      return p;
    },
    dimensionsOf(id) {
      const hashing = /^hashing-v1-(\d+)$/.exec(id);
      return dims.get(id) ?? (hashing ? Number(hashing[1]) : null);
    },
    async close() {
      for (const [id, p] of loaded) {
        if (id === current.id) continue;
        const e = await p.catch(() => null);
        await e?.close().catch(() => undefined);
      }
    },
  };
}
