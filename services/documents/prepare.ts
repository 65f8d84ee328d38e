/**
 * Reading a document (parse + structure-aware chunking) off the gateway's thread.
 *
 * Counting model tokens is the costly part: a 5 MiB Markdown file is about 11,000 chunks and
 * 15 s of WordPiece tokenisation. Run on the process's main thread, that would stall every
 * request the process serves for as long. The preparer runs it in one worker thread instead, with
 * the embedder's own tokenizer (the embedder says which: `Embedder.tokenCounter`), one document at
 * a time, and bounds each document's time: a file that takes longer is refused with a reason, and
 * the worker is replaced.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { approximateTokenCount } from '../../infra/embeddings/hashing';
import { onnxCore } from '../../infra/embeddings/onnx';
import type { Embedder, TokenCounterSpec } from '../core/ports';
import { type Chunk, chunkDocument } from './chunking';
import { type DocumentFormat, DocumentParseError, type DocumentParseErrorCode, type ParseInput, parseDocument } from './parsing';

export interface Prepared {
  format: DocumentFormat;
  chunks: Chunk[];
}

export interface PrepareOptions {
  maxTokens: number;
  overlapTokens: number;
}

const counters = new Map<string, (text: string) => number>();

/** A token counter equal to the embedder's countTokens, built from its spec (cached per spec). */
export function tokenCounter(spec: TokenCounterSpec): (text: string) => number {
  const key = spec.kind === 'wordpiece' ? `wordpiece:${spec.modelDir}` : spec.kind;
  let count = counters.get(key);
  if (!count) {
    if (spec.kind === 'wordpiece') {
      const { tokenizer } = onnxCore.loadTokenizer(spec.modelDir);
      count = (text) => tokenizer.tokenize(text).length;
    } else count = approximateTokenCount;
    counters.set(key, count);
  }
  return count;
}

/** Parse and chunk on this thread. */
export async function prepareDocument(input: ParseInput, opts: PrepareOptions & { countTokens: (text: string) => number }): Promise<Prepared> {
  const parsed = await parseDocument(input);
  const chunks = chunkDocument(parsed, { maxTokens: opts.maxTokens, overlapTokens: opts.overlapTokens, countTokens: opts.countTokens });
  return { format: parsed.format, chunks };
}

export interface DocumentPreparer {
  /** Parses and chunks for `embedder`'s token budget; rejects with DocumentParseError for unreadable files. */
  prepare(input: ParseInput, opts: PrepareOptions & { embedder: Pick<Embedder, 'countTokens' | 'tokenCounter'>; timeoutMs?: number }): Promise<Prepared>;
  /**
   * Starts the worker and loads the parsers and `embedder`'s tokenizer there (about 0.7 s), so
   * that the first upload does not wait for it.
   */
  warmUp(embedder: Pick<Embedder, 'countTokens' | 'tokenCounter'>): Promise<void>;
  close(): Promise<void>;
}

interface Pending {
  resolve: (p: Prepared) => void;
  reject: (err: Error) => void;
}

type Reply =
  | { id: number; ok: true; result: Prepared }
  | { id: number; ok: false; parse?: { code: DocumentParseErrorCode; reason: string }; message?: string };

export const PREPARE_WORKER = join(__dirname, 'prepareWorker.js');
const WORKER_SHIPPED = existsSync(PREPARE_WORKER);
const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * One worker thread, started on first use and replaced after a timeout or a crash. An embedder
 * without a `tokenCounter` spec (one whose counting only it can do) is served on this thread.
 */
export function createDocumentPreparer(opts: { timeoutMs?: number; log?: (level: 'warn', msg: string, extra?: Record<string, unknown>) => void } = {}): DocumentPreparer {
  const defaultTimeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let worker: Worker | null = null;
  let nextId = 1;
  let closed = false;
  const pending = new Map<number, Pending>();
  // One document at a time: a second would only share the same core and double the memory.
  let queue: Promise<unknown> = Promise.resolve();

  // Jobs in `pending` all belong to the current worker (one document at a time); a retired
  // worker's late events (its exit after terminate) are ignored.
  const retire = (w: Worker, err: Error) => {
    if (worker !== w) return;
    worker = null;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    void w.terminate();
  };

  const start = (): Worker => {
    if (worker) return worker;
    const w = new Worker(PREPARE_WORKER, { workerData: { role: 'tenant-rag-preparer' } });
    w.unref();
    w.on('message', (m: Reply) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else if (m.parse) p.reject(new DocumentParseError(m.parse.code, m.parse.reason));
      else p.reject(new Error(m.message ?? 'document preparation failed'));
    });
    w.on('error', (err) => {
      if (worker === w) opts.log?.('warn', 'document preparer worker failed; it is replaced', { error: err.message });
      retire(w, err);
    });
    w.on('exit', (code) => retire(w, new Error(`document preparer worker exited with code ${code}`)));
    worker = w;
    return w;
  };

  const inWorker = (input: ParseInput, spec: TokenCounterSpec, o: PrepareOptions, timeoutMs: number): Promise<Prepared> =>
    new Promise<Prepared>((resolve, reject) => {
      const w = start();
      const id = nextId++;
      const timer = setTimeout(() => {
        if (!pending.has(id)) return;
        opts.log?.('warn', 'document preparation timed out; the worker is replaced', { filename: input.filename, timeoutMs });
        pending.get(id)!.reject(new DocumentParseError('corrupt', `reading the document took longer than ${Math.round(timeoutMs / 1000)} s; it is too large or too complex to index`));
        pending.delete(id);
        retire(w, new Error('document preparer worker replaced after a timeout'));
      }, timeoutMs);
      timer.unref();
      const done = <T>(f: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        f(v);
      };
      pending.set(id, { resolve: done(resolve), reject: done(reject) });
      w.ref();
      w.postMessage({ id, filename: input.filename, declaredType: input.declaredType, bytes: input.bytes, spec, opts: o });
    }).finally(() => {
      if (pending.size === 0) worker?.unref();
    });

  const preparer: DocumentPreparer = {
    prepare(input, o) {
      if (closed) return Promise.reject(new Error('document preparer is closed'));
      const spec = o.embedder.tokenCounter;
      const options = { maxTokens: o.maxTokens, overlapTokens: o.overlapTokens };
      if (!spec || !WORKER_SHIPPED) return prepareDocument(input, { ...options, countTokens: (t) => o.embedder.countTokens(t) });
      // Queued behind another document: close() may have come meanwhile (no new worker after it,
      // else a stopping indexer waits for a whole document, up to the timeout).
      const run = queue.then(() => (closed ? Promise.reject(new Error('document preparer is closed')) : inWorker(input, spec, options, o.timeoutMs ?? defaultTimeoutMs)));
      queue = run.catch(() => undefined);
      return run;
    },
    async warmUp(embedder) {
      await preparer.prepare({ filename: 'warm-up.txt', bytes: Buffer.from('Warm up.'), declaredType: 'text/plain' }, { maxTokens: 256, overlapTokens: 0, embedder });
    },
    async close() {
      closed = true;
      if (worker) retire(worker, new Error('document preparer is closed'));
    },
  };
  return preparer;
}
