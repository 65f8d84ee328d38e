'use strict';
/**
 * Local all-MiniLM-L6-v2 inference: the one implementation of tokenise -> onnxruntime -> mean-pool
 * -> L2-normalise, shared by the in-thread embedder (onnx.ts) and the worker pool (pool.ts).
 *
 * Plain CommonJS on purpose: a worker_threads entry written in TypeScript would need a loader,
 * and the loader differs between `tsx` (npm start), @swc/jest and `node dist/`. This file runs
 * unchanged under all three, so it imports nothing from the project's TypeScript.
 *
 * Loaded with `require`, it exports the core functions. Started as a worker by pool.ts (workerData
 * carries `{ role: 'tenant-rag-embedder' }`), it also serves embedding requests over its port.
 */
const { existsSync, readFileSync } = require('node:fs');
const { createHash } = require('node:crypto');
const { basename, join } = require('node:path');
const workerThreads = require('node:worker_threads');

const MODEL_FILE = 'model.onnx';
const TOKENIZER_FILE = 'tokenizer.json';
const MANIFEST_FILE = 'model.json';
const WORKER_ROLE = 'tenant-rag-embedder';
/** all-MiniLM-L6-v2 was trained on 128-token windows and its position table holds 512; 256 keeps quality and cost sane. */
const DEFAULT_MAX_TOKENS = 256;
/**
 * Text beyond this many characters cannot reach the model once it is cut to 256 tokens (every
 * WordPiece token but [UNK] of a >100-char word covers at least one character), so it is not
 * tokenised at all: a whole document passed by mistake costs microseconds, not seconds.
 */
const MAX_CHARS_TO_TOKENISE = 64 * 1024;

function modelFilesPresent(modelDir) {
  return existsSync(join(modelDir, MODEL_FILE)) && existsSync(join(modelDir, TOKENIZER_FILE));
}

function sha256Hex(buffer) {
  return createHash('sha256').update(buffer).digest('hex');
}

/**
 * Reads model.json (written by infra/scripts/models.sh at fetch time) and, when `verify` is set,
 * checks model.onnx against its sha256 (60-200 ms for the 23 MB int8 file, so it is done at every
 * load, once, in the main thread). Returns the model bytes when it read them, so the session does
 * not read the file twice.
 */
function readModel(modelDir, verify) {
  const manifestPath = join(modelDir, MANIFEST_FILE);
  let manifest = {};
  if (existsSync(manifestPath)) {
    try {
      manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    } catch (err) {
      throw new Error(`corrupt ${manifestPath}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (typeof manifest !== 'object' || manifest === null) throw new Error(`corrupt ${manifestPath}: not an object`);
  }
  const modelBytes = verify || !manifest.sha256 ? readFileSync(join(modelDir, MODEL_FILE)) : null;
  const actualSha = modelBytes ? sha256Hex(modelBytes) : null;
  if (verify && manifest.sha256 && actualSha !== String(manifest.sha256).toLowerCase()) {
    throw new Error(
      `corrupt ${join(modelDir, MODEL_FILE)}: sha256 ${actualSha} does not match ${MANIFEST_FILE} (${manifest.sha256}); ` +
        'run `npm run models:fetch` again',
    );
  }
  const sha256 = String(manifest.sha256 || actualSha).toLowerCase();
  const name = typeof manifest.id === 'string' && manifest.id ? manifest.id : basename(modelDir);
  const maxTokens = Number.isInteger(manifest.maxTokens) && manifest.maxTokens > 2 ? manifest.maxTokens : DEFAULT_MAX_TOKENS;
  const dimensions = Number.isInteger(manifest.dimensions) ? manifest.dimensions : null;
  return { id: `${name}@${sha256.slice(0, 12)}`, sha256, maxTokens, dimensions, modelBytes };
}

function loadTokenizer(modelDir) {
  const path = join(modelDir, TOKENIZER_FILE);
  let json;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`corrupt ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // ESM-first package with a CommonJS build under exports["."].node.require; require() picks that.
  const { Tokenizer } = require('@huggingface/tokenizers');
  const tokenizer = new Tokenizer(json, {});
  const cls = tokenizer.token_to_id('[CLS]');
  const sep = tokenizer.token_to_id('[SEP]');
  if (cls === undefined || sep === undefined) throw new Error(`corrupt ${path}: no [CLS]/[SEP] tokens`);
  return { tokenizer, cls, sep };
}

/** Token ids with [CLS]/[SEP], cut to maxTokens keeping the final [SEP]. */
function encode(tok, text, maxTokens) {
  const input = text.length > MAX_CHARS_TO_TOKENISE ? text.slice(0, MAX_CHARS_TO_TOKENISE) : text;
  const ids = tok.tokenizer.encode(input).ids;
  if (ids.length <= maxTokens) return ids;
  const cut = ids.slice(0, maxTokens - 1);
  cut.push(tok.sep);
  return cut;
}

/** Exact number of model tokens in `text`, without [CLS]/[SEP] and without truncation. */
function countTokens(tok, text) {
  return tok.tokenizer.tokenize(text).length;
}

async function createSession(modelSource, threads) {
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(modelSource, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  for (const input of ['input_ids', 'attention_mask', 'token_type_ids']) {
    if (!session.inputNames.includes(input)) throw new Error(`model has no input ${input} (inputs: ${session.inputNames.join(', ')})`);
  }
  const output = session.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : session.outputNames[0];
  return { ort, session, output };
}

/** Int64 tensors for one batch, padded to its longest sequence. */
function toFeeds(ort, batchIds) {
  const rows = batchIds.length;
  const cols = batchIds.reduce((max, ids) => Math.max(max, ids.length), 0);
  const inputIds = new BigInt64Array(rows * cols);
  const mask = new BigInt64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const ids = batchIds[r];
    const base = r * cols;
    for (let c = 0; c < ids.length; c++) {
      inputIds[base + c] = BigInt(ids[c]);
      mask[base + c] = 1n;
    }
  }
  const dims = [rows, cols];
  return {
    input_ids: new ort.Tensor('int64', inputIds, dims),
    attention_mask: new ort.Tensor('int64', mask, dims),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(rows * cols), dims),
  };
}

/** Mean over the unmasked positions, then L2-normalised; one flat rows x dims array. */
function meanPool(hidden, batchIds, cols, dims) {
  const rows = batchIds.length;
  const out = new Float32Array(rows * dims);
  for (let r = 0; r < rows; r++) {
    const len = batchIds[r].length;
    const o = r * dims;
    for (let t = 0; t < len; t++) {
      const h = (r * cols + t) * dims;
      for (let d = 0; d < dims; d++) out[o + d] += hidden[h + d];
    }
    let norm = 0;
    for (let d = 0; d < dims; d++) {
      out[o + d] /= len;
      norm += out[o + d] * out[o + d];
    }
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let d = 0; d < dims; d++) out[o + d] *= scale;
  }
  return out;
}

/**
 * Loads tokenizer and session. Returns null when the model files are absent; throws when they are
 * present but unusable. `verify` checks the sha256 (the pool verifies once in the main thread and
 * starts its workers with verify=false).
 */
async function loadOnnxCore({ modelDir, threads = 1, verify = true }) {
  if (!modelFilesPresent(modelDir)) return null;
  const model = readModel(modelDir, verify);
  const tok = loadTokenizer(modelDir);
  let runtime;
  try {
    runtime = await createSession(model.modelBytes ?? join(modelDir, MODEL_FILE), Math.max(1, threads));
  } catch (err) {
    throw new Error(`cannot load ${join(modelDir, MODEL_FILE)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const { ort, session, output } = runtime;
  let released = false;

  /** Embeds one batch as given (no reordering); returns a flat rows x dims Float32Array. */
  async function embedBatch(texts) {
    const batchIds = texts.map((text) => encode(tok, text, model.maxTokens));
    return runIds(batchIds);
  }

  // Releasing a session inside session.run crashes the process; close() waits for these.
  const inFlight = new Set();

  async function runIds(batchIds) {
    if (released) throw new Error('embedder is closed');
    const feeds = toFeeds(ort, batchIds);
    const run = session.run(feeds);
    inFlight.add(run);
    let results;
    try {
      results = await run;
    } finally {
      inFlight.delete(run);
    }
    const hidden = results[output];
    const [, cols, dims] = hidden.dims;
    const pooled = meanPool(hidden.data, batchIds, cols, dims);
    for (const name of Object.keys(results)) results[name].dispose?.();
    return { vectors: pooled, dims };
  }

  // The model decides the width; model.json only has to agree with it.
  const probe = await embedBatch(['dimension probe']);
  if (model.dimensions !== null && model.dimensions !== probe.dims) {
    throw new Error(`model.json says ${model.dimensions} dimensions but the model produces ${probe.dims}`);
  }

  return {
    id: model.id,
    sha256: model.sha256,
    dimensions: probe.dims,
    maxTokens: model.maxTokens,
    embedBatch,
    runIds,
    toFeeds: (batchIds) => toFeeds(ort, batchIds),
    session,
    encode: (text) => encode(tok, text, model.maxTokens),
    countTokens: (text) => countTokens(tok, text),
    async close() {
      if (released) return;
      released = true;
      await Promise.allSettled([...inFlight]);
      await session.release();
    },
  };
}

/**
 * Worker side of pool.ts: one session per worker, one batch at a time. It stops itself on
 * `{ type: 'close' }` once the batch in hand is done: Worker.terminate() during session.run aborts
 * the whole process ("terminate called after throwing an instance of 'Napi::Error'").
 */
/**
 * Fault injection for the fault suite (test/faults): with TENANT_RAG_FAULT_EMBED_CRASH_ON=<word>,
 * a worker given a text containing that word dies of an uncaught exception, as a crashing native
 * call or a bug would take the thread down. No real input is known to crash the model (texts are
 * cut to 256 tokens, onnxruntime errors arrive as rejections), hence this hook. Refused in
 * production: the worker then fails to load and the product does not start.
 */
const CRASH_ON = process.env.TENANT_RAG_FAULT_EMBED_CRASH_ON || '';

function serveAsWorker() {
  const { parentPort, workerData } = workerThreads;
  if (CRASH_ON && process.env.NODE_ENV === 'production') {
    parentPort.postMessage({ type: 'failed', message: 'TENANT_RAG_FAULT_EMBED_CRASH_ON is a test-only fault injection and is refused when NODE_ENV=production' });
    return;
  }
  loadOnnxCore({ modelDir: workerData.modelDir, threads: workerData.threads, verify: false }).then(
    (core) => {
      if (!core) {
        parentPort.postMessage({ type: 'failed', message: `model files not found at ${workerData.modelDir}` });
        return;
      }
      let running = Promise.resolve();
      parentPort.on('message', (msg) => {
        if (msg.type === 'close') {
          running
            .then(() => core.close())
            .catch(() => undefined)
            .finally(() => process.exit(0));
          return;
        }
        if (msg.type !== 'embed') return;
        if (CRASH_ON && msg.texts.some((t) => t.includes(CRASH_ON))) {
          setImmediate(() => {
            throw new Error('fault injection: embedding worker crashed (TENANT_RAG_FAULT_EMBED_CRASH_ON)');
          });
          return;
        }
        running = core.embedBatch(msg.texts).then(
          ({ vectors, dims }) => parentPort.postMessage({ type: 'result', jobId: msg.jobId, vectors, dims }, [vectors.buffer]),
          (err) => parentPort.postMessage({ type: 'error', jobId: msg.jobId, message: err instanceof Error ? err.message : String(err) }),
        );
      });
      parentPort.postMessage({ type: 'ready', id: core.id, dimensions: core.dimensions });
    },
    (err) => parentPort.postMessage({ type: 'failed', message: err instanceof Error ? err.message : String(err) }),
  );
}

if (!workerThreads.isMainThread && workerThreads.workerData && workerThreads.workerData.role === WORKER_ROLE) {
  serveAsWorker();
}

module.exports = { loadOnnxCore, loadTokenizer, modelFilesPresent, readModel, WORKER_ROLE, MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE };
