import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Embedder } from '../../services/core/ports';
import { DEFAULT_BATCH_SIZE, onnxCore, planBatches, scatterRows } from './onnx';

/**
 * The entry is plain CommonJS so it needs no TypeScript loader: it starts the same way under tsx,
 * @swc/jest and compiled node. `execArgv: []` keeps the parent's loader flags (tsx's --import/--require)
 * out of the worker, where they would only cost start-up time.
 */
const WORKER_ENTRY = join(__dirname, 'worker.js');
const WORKER_ROLE = 'tenant-rag-embedder';

type WorkerReply =
  | { type: 'ready'; id: string; dimensions: number }
  | { type: 'failed'; message: string }
  | { type: 'result'; jobId: number; vectors: Float32Array; dims: number }
  | { type: 'error'; jobId: number; message: string };

interface Job {
  id: number;
  texts: string[];
  resolve(result: { vectors: Float32Array; dims: number }): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
}

export interface EmbedderPoolOptions {
  modelDir: string;
  workers: number;
  threadsPerWorker: number;
  batchSize?: number;
}

/**
 * Asks a worker to finish its batch and exit. Never Worker.terminate(): terminating a thread inside
 * onnxruntime's session.run aborts the whole process. Ref'd, so awaiting this keeps the process up.
 */
function stopWorker(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    worker.once('exit', () => resolve());
    worker.ref();
    worker.postMessage({ type: 'close' });
  });
}

function startWorker(modelDir: string, threads: number): Promise<{ worker: Worker; id: string; dimensions: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_ENTRY, { workerData: { role: WORKER_ROLE, modelDir, threads }, execArgv: [] });
    const onExit = (code: number) => reject(new Error(`embedding worker exited with code ${code} while loading`));
    const onError = (err: Error) => {
      worker.off('exit', onExit);
      reject(err);
    };
    worker.once('error', onError);
    worker.once('exit', onExit);
    worker.once('message', (msg: WorkerReply) => {
      worker.off('error', onError);
      worker.off('exit', onExit);
      if (msg.type === 'ready') resolve({ worker, id: msg.id, dimensions: msg.dimensions });
      else {
        // Loading failed before any batch ran, so nothing is inside onnxruntime.
        void worker.terminate();
        reject(new Error(msg.type === 'failed' ? msg.message : `unexpected message from embedding worker: ${msg.type}`));
      }
    });
  });
}

/**
 * all-MiniLM-L6-v2 on worker threads, so inference never blocks the event loop. Each worker holds
 * its own onnxruntime session (about 100 MB) with `threadsPerWorker` intra-op threads; an embed call
 * is cut into batches of similar length that go to whichever worker is free, queries first. Null when the model
 * files are missing; rejects when they are corrupt. countTokens is exact and runs in this thread
 * (the tokenizer alone, about 0.3 ms for a 200-token chunk).
 */
export async function createEmbedderPool(opts: EmbedderPoolOptions): Promise<Embedder | null> {
  if (!onnxCore.modelFilesPresent(opts.modelDir)) return null;
  // Checksum and JSON once, here; the workers trust what this verified.
  const model = onnxCore.readModel(opts.modelDir, true);
  const tokenizer = onnxCore.loadTokenizer(opts.modelDir).tokenizer;
  const batchSize = Math.max(1, opts.batchSize ?? DEFAULT_BATCH_SIZE);
  const threads = Math.max(1, opts.threadsPerWorker);
  const started = await Promise.allSettled(Array.from({ length: Math.max(1, opts.workers) }, () => startWorker(opts.modelDir, threads)));
  const failure = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure) {
    await Promise.all(started.map((s) => (s.status === 'fulfilled' ? stopWorker(s.value.worker) : undefined)));
    throw failure.reason instanceof Error ? failure.reason : new Error(String(failure.reason));
  }
  const ready = started.map((s) => (s as PromiseFulfilledResult<{ worker: Worker; id: string; dimensions: number }>).value);
  const dimensions = ready[0]!.dimensions;

  const slots: Slot[] = [];
  const queue: Job[] = [];
  let nextJobId = 1;
  let closed = false;
  let starting = 0;

  const dispatch = () => {
    for (const slot of slots) {
      if (slot.job || queue.length === 0) continue;
      const job = queue.shift()!;
      slot.job = job;
      slot.worker.ref();
      slot.worker.postMessage({ type: 'embed', jobId: job.id, texts: job.texts });
    }
  };

  const failAll = (err: Error) => {
    for (const job of queue.splice(0)) job.reject(err);
  };

  // A worker that dies takes only its current batch with it; a replacement is started in its place.
  const adopt = (worker: Worker) => {
    const slot: Slot = { worker, job: null };
    worker.unref();
    slots.push(slot);
    const retire = (reason: Error) => {
      const index = slots.indexOf(slot);
      if (index < 0) return;
      slots.splice(index, 1);
      slot.job?.reject(reason);
      slot.job = null;
      if (closed) return;
      starting++;
      startWorker(opts.modelDir, threads).then(
        (replacement) => {
          starting--;
          if (closed) return void stopWorker(replacement.worker);
          adopt(replacement.worker);
          dispatch();
        },
        (err: Error) => {
          starting--;
          if (slots.length === 0 && starting === 0) failAll(new Error(`no embedding worker left: ${err.message}`));
        },
      );
    };
    worker.on('message', (msg: WorkerReply) => {
      const job = slot.job;
      if (!job || (msg.type !== 'result' && msg.type !== 'error') || msg.jobId !== job.id) return;
      slot.job = null;
      // Idle workers do not keep the process alive; one with a batch in flight does.
      worker.unref();
      if (msg.type === 'result') job.resolve({ vectors: msg.vectors, dims: msg.dims });
      else job.reject(new Error(`embedding failed: ${msg.message}`));
      dispatch();
    });
    worker.on('error', (err) => retire(err));
    worker.on('exit', (code) => retire(new Error(`embedding worker exited with code ${code}`)));
  };
  for (const r of ready) adopt(r.worker);

  // Queries jump the queue: a question asked while a large document is being indexed waits for
  // the batches already running, not for the thousands still queued behind them.
  const runBatch = (texts: string[], urgent: boolean) =>
    new Promise<{ vectors: Float32Array; dims: number }>((resolve, reject) => {
      if (closed) return reject(new Error('embedder pool is closed'));
      if (slots.length === 0 && starting === 0) return reject(new Error('no embedding worker left'));
      const job = { id: nextJobId++, texts, resolve, reject };
      if (urgent) queue.unshift(job);
      else queue.push(job);
      dispatch();
    });

  return {
    id: model.id,
    dimensions,
    semantic: true,
    async embed(texts, purpose) {
      const out = new Array<Float32Array>(texts.length);
      await Promise.all(
        planBatches(texts, batchSize).map(async (batch) => {
          const { vectors, dims } = await runBatch(
            batch.map((i) => texts[i]!),
            purpose === 'query',
          );
          scatterRows(out, batch, vectors, dims);
        }),
      );
      return out;
    },
    countTokens: (text) => tokenizer.tokenize(text).length,
    tokenCounter: { kind: 'wordpiece', modelDir: opts.modelDir },
    async close() {
      if (closed) return;
      closed = true;
      failAll(new Error('embedder pool is closed'));
      const workers = slots.splice(0);
      for (const slot of workers) {
        slot.job?.reject(new Error('embedder pool is closed'));
        slot.job = null;
      }
      // Each finishes the batch it holds (under a second), then exits.
      await Promise.all(workers.map((slot) => stopWorker(slot.worker)));
    },
  };
}
