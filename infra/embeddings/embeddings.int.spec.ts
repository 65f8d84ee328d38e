import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describeSkipped } from '../../test/support/skip';
import { startFakeOpenAI, type FakeOpenAI } from '../../test/support/fakeOpenAI';
import { UpstreamModelError } from '../llm/openaiAnswerer';
import { createHashingEmbedder } from './hashing';
import { createEmbedder } from './index';
import { loadOnnxEmbedder } from './onnx';
import { createOpenAIEmbedder } from './openai';
import { createEmbedderPool } from './pool';

const MODEL_DIR = join(__dirname, '..', '..', 'models', 'all-minilm-l6-v2-q');
const quiet = () => undefined;

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot;
}

function norm(v: Float32Array): number {
  return Math.sqrt(cosine(v, v));
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'tenant-rag-models-'));
}

const paraphrase = ['How do I reset my password?', 'What are the steps to change my login password?'] as const;
const unrelated = ['How do I reset my password?', 'The cat slept on the warm windowsill all afternoon.'] as const;

describe('hashing embedder (lexical fallback)', () => {
  const embedder = createHashingEmbedder(384);

  it('gives the same normalised vector for the same text, every time', async () => {
    const [a, b] = await embedder.embed(['Quarterly revenue grew in Europe.', 'Quarterly revenue grew in Europe.'], 'passage');
    const [again] = await createHashingEmbedder(384).embed(['Quarterly revenue grew in Europe.'], 'query');

    expect(Array.from(a!)).toEqual(Array.from(b!));
    expect(Array.from(again!)).toEqual(Array.from(a!));
    expect(norm(a!)).toBeCloseTo(1, 5);
    expect(embedder).toMatchObject({ id: 'hashing-v1-384', dimensions: 384, semantic: false });
  });

  it('scores texts that share words above texts that do not', async () => {
    const [query, sharing, other] = await embedder.embed(
      ['travel expense reimbursement', 'Reimbursement of travel expenses takes thirty days.', 'The cat slept on the windowsill.'],
      'passage',
    );

    expect(cosine(query!, sharing!)).toBeGreaterThan(0.3);
    expect(cosine(query!, other!)).toBeLessThan(0.1);
  });

  it('gives an empty text a zero vector rather than NaN', async () => {
    const [empty] = await embedder.embed([''], 'query');
    expect(Array.from(empty!).every((x) => x === 0)).toBe(true);
  });

  it('approximates WordPiece token counts', () => {
    expect(embedder.countTokens('Hello, World!')).toBe(4);
    expect(embedder.countTokens('Internationalisation')).toBeGreaterThan(2);
    expect(embedder.countTokens('word '.repeat(200))).toBe(200);
  });

  // Its speed (a 10 MiB document in under 10 s) is a benchmark figure (`npm run bench -- --only ingest`),
  // not a test: here only what a large batch must give back.
  it('embeds the ~40k chunks of a 10 MiB document in one call, one unit vector per chunk, in order', async () => {
    const sentence = 'Reimbursement of travel expenses requires original receipts, submitted within thirty days. ';
    const chunks = Array.from({ length: 40_000 }, (_, i) => `${i} ${sentence.repeat(3)}`.slice(0, 262));

    const vectors = await embedder.embed(chunks, 'passage');

    expect(vectors).toHaveLength(40_000);
    for (const i of [0, 12_345, 39_999]) {
      const v = vectors[i]!;
      expect(v).toHaveLength(embedder.dimensions);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
      expect(Array.from(v)).toEqual(Array.from((await embedder.embed([chunks[i]!], 'passage'))[0]!));
    }
  });
});

describe('OpenAI-compatible embedder against a local fake server', () => {
  let fake: FakeOpenAI;
  beforeAll(async () => {
    fake = await startFakeOpenAI({ dimensions: 256 });
  });
  afterAll(() => fake.close());
  beforeEach(() => fake.setMode('normal'));

  it('learns the width with one call and returns normalised vectors in input order', async () => {
    const embedder = await createOpenAIEmbedder({ baseURL: fake.url, apiKey: 'sk-test', model: 'fake-embed' });
    const texts = Array.from({ length: 150 }, (_, i) => `document number ${i} about topic ${i % 7}`);

    const vectors = await embedder.embed(texts, 'passage');
    const [single] = await embedder.embed([texts[149]!], 'query');

    expect(embedder).toMatchObject({ id: 'openai:fake-embed', dimensions: 256, semantic: true });
    expect(vectors).toHaveLength(150);
    expect(vectors.every((v) => v.length === 256 && Math.abs(norm(v) - 1) < 1e-5)).toBe(true);
    expect(cosine(vectors[149]!, single!)).toBeCloseTo(1, 5);
    expect(cosine(vectors[0]!, vectors[1]!)).toBeLessThan(0.99);
  });

  it('asks the server for the configured width', async () => {
    const embedder = await createOpenAIEmbedder({ baseURL: fake.url, apiKey: 'k', model: 'fake-embed', dimensions: 512 });

    expect(embedder.dimensions).toBe(512);
    expect(fake.requests.at(-1)?.body).toMatchObject({ dimensions: 512, encoding_format: 'float' });
  });

  it('surfaces a failing server as a 502', async () => {
    const embedder = await createOpenAIEmbedder({ baseURL: fake.url, apiKey: 'k', model: 'fake-embed', maxRetries: 1 });
    fake.setMode({ status: 500 });

    await expect(embedder.embed(['x'], 'query')).rejects.toMatchObject({ name: 'UpstreamModelError', status: 502 });
    await expect(embedder.embed(['x'], 'query')).rejects.toBeInstanceOf(UpstreamModelError);
  });

  it('surfaces a server that does not answer as a 504 within the timeout', async () => {
    const embedder = await createOpenAIEmbedder({ baseURL: fake.url, apiKey: 'k', model: 'fake-embed', timeoutMs: 300 });
    fake.setMode({ slow: 10_000 });
    const started = Date.now();

    await expect(embedder.embed(['x'], 'query')).rejects.toMatchObject({ status: 504 });
    // Gave up on its timeout rather than waiting for the 10 s answer (slack for a loaded machine).
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('is the one createEmbedder picks when configured', async () => {
    const { embedder, degraded } = await createEmbedder({
      openai: { baseURL: fake.url, apiKey: 'k', model: 'fake-embed' },
      modelDir: MODEL_DIR,
      workers: 1,
      threads: 1,
      batchSize: 16,
      log: quiet,
    });

    expect(embedder.id).toBe('openai:fake-embed');
    expect(degraded).toBeNull();
  });
});

describe('embedder selection without a model', () => {
  it('falls back to hashing and says so loudly', async () => {
    const empty = tempDir();
    const logged: string[] = [];
    try {
      const { embedder, degraded } = await createEmbedder({
        modelDir: empty,
        workers: 1,
        threads: 1,
        batchSize: 16,
        log: (level, msg) => logged.push(`${level}: ${msg}`),
      });

      expect(embedder.id).toBe('hashing-v1-384');
      expect(degraded).toContain(empty);
      expect(degraded).toContain('lexical only');
      expect(degraded).toContain('npm run models:fetch');
      expect(logged).toEqual([`warn: ${degraded}`]);
      await expect(loadOnnxEmbedder({ modelDir: empty })).resolves.toBeNull();
      await expect(createEmbedderPool({ modelDir: empty, workers: 1, threadsPerWorker: 1 })).resolves.toBeNull();
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

if (!existsSync(join(MODEL_DIR, 'model.onnx')) || !existsSync(join(MODEL_DIR, 'tokenizer.json'))) {
  describeSkipped(
    'all-MiniLM-L6-v2 ONNX embedder',
    `model files not found at ${relative(process.cwd(), MODEL_DIR)}; run npm run models:fetch`,
  );
} else {
  describe('all-MiniLM-L6-v2 ONNX embedder', () => {
    it('places paraphrases together and unrelated texts apart', async () => {
      const embedder = (await loadOnnxEmbedder({ modelDir: MODEL_DIR }))!;
      try {
        const [a, b, c] = await embedder.embed([paraphrase[0], paraphrase[1], unrelated[1]], 'passage');

        expect(embedder.id).toMatch(/^all-minilm-l6-v2-q@[0-9a-f]{12}$/);
        expect(embedder).toMatchObject({ dimensions: 384, semantic: true });
        expect(norm(a!)).toBeCloseTo(1, 5);
        expect(cosine(a!, b!)).toBeGreaterThan(0.5);
        expect(cosine(a!, c!)).toBeLessThan(0.3);
      } finally {
        await embedder.close();
      }
    });

    it('gives a text nearly the same vector in a batch as alone', async () => {
      const embedder = (await loadOnnxEmbedder({ modelDir: MODEL_DIR, batchSize: 16 }))!;
      try {
        const texts = Array.from({ length: 20 }, (_, i) => `Clause ${i}: ${'the supplier shall deliver the goods on time. '.repeat(1 + (i % 5))}`);
        const batched = await embedder.embed(texts, 'passage');
        for (const i of [0, 7, 19]) {
          const [alone] = await embedder.embed([texts[i]!], 'passage');
          expect(cosine(batched[i]!, alone!)).toBeGreaterThan(0.98);
        }
      } finally {
        await embedder.close();
      }
    });

    it('counts tokens exactly and truncates long texts to the model window', async () => {
      const embedder = (await loadOnnxEmbedder({ modelDir: MODEL_DIR }))!;
      try {
        expect(embedder.countTokens('Hello, World!')).toBe(4);
        expect(embedder.countTokens('unbelievably')).toBe(5);
        const sentence = 'Invoices are paid within thirty days. ';
        const long = sentence.repeat(200);
        expect(embedder.countTokens(long)).toBe(200 * embedder.countTokens(sentence));
        const [full, head] = await embedder.embed([long, sentence.repeat(25)], 'passage');
        expect(norm(full!)).toBeCloseTo(1, 5);
        expect(cosine(full!, head!)).toBeGreaterThan(0.98);
      } finally {
        await embedder.close();
      }
    });

    it('rejects a model whose checksum does not match model.json', async () => {
      const dir = tempDir();
      try {
        copyFileSync(join(MODEL_DIR, 'model.onnx'), join(dir, 'model.onnx'));
        copyFileSync(join(MODEL_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
        writeFileSync(join(dir, 'model.json'), JSON.stringify({ id: 'all-minilm-l6-v2-q', sha256: '0'.repeat(64), dimensions: 384, maxTokens: 256 }));

        await expect(loadOnnxEmbedder({ modelDir: dir })).rejects.toThrow(/sha256/);
        await expect(createEmbedderPool({ modelDir: dir, workers: 1, threadsPerWorker: 1 })).rejects.toThrow(/sha256/);
        writeFileSync(join(dir, 'model.json'), '{ not json');
        await expect(loadOnnxEmbedder({ modelDir: dir })).rejects.toThrow(/corrupt/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('embeds on worker threads while the event loop keeps running', async () => {
      const pool = (await createEmbedderPool({ modelDir: MODEL_DIR, workers: 2, threadsPerWorker: 1, batchSize: 8 }))!;
      const local = (await loadOnnxEmbedder({ modelDir: MODEL_DIR, batchSize: 8 }))!;
      try {
        const texts = Array.from({ length: 32 }, (_, i) => `Section ${i}. ${'Payment terms are net thirty days from the invoice date. '.repeat(4)}`);
        let ticks = 0;
        let last = performance.now();
        let longestGap = 0;
        const ticker = setInterval(() => {
          const now = performance.now();
          longestGap = Math.max(longestGap, now - last);
          last = now;
          ticks++;
        }, 5);
        const started = performance.now();

        const pooled = await pool.embed(texts, 'passage');

        const elapsed = performance.now() - started;
        clearInterval(ticker);
        const inThread = await local.embed(texts, 'passage');
        expect(pool.id).toBe(local.id);
        expect(pooled).toHaveLength(32);
        pooled.forEach((v, i) => expect(cosine(v, inThread[i]!)).toBeGreaterThan(0.98));
        // Inference on this thread would leave one gap as long as the whole call.
        expect(ticks).toBeGreaterThan(10);
        expect(longestGap).toBeLessThan(elapsed / 3);
        expect(pool.countTokens('Hello, World!')).toBe(4);
      } finally {
        await pool.close();
        await local.close();
      }
    });

    it('is the one createEmbedder picks when no server is configured', async () => {
      const { embedder, degraded } = await createEmbedder({ modelDir: MODEL_DIR, workers: 1, threads: 1, batchSize: 16, log: quiet });
      try {
        expect(embedder.id).toMatch(/^all-minilm-l6-v2-q@/);
        expect(degraded).toBeNull();
        const [v] = await embedder.embed(['a query'], 'query');
        expect(v).toHaveLength(384);
      } finally {
        await embedder.close();
      }
    });

    it('answers a query while a large indexing job is queued', async () => {
      const pool = (await createEmbedderPool({ modelDir: MODEL_DIR, workers: 1, threadsPerWorker: 1, batchSize: 4 }))!;
      try {
        const indexing = pool.embed(Array.from({ length: 200 }, (_, i) => `Paragraph ${i} of a long contract about delivery terms.`), 'passage');
        let indexingDone = false;
        void indexing.then(() => (indexingDone = true));
        await new Promise((r) => setTimeout(r, 50));

        const [query] = await pool.embed(['when are goods delivered?'], 'query');

        expect(query).toHaveLength(384);
        expect(indexingDone).toBe(false);
        await indexing;
      } finally {
        await pool.close();
      }
    });

    it('fails pending work instead of hanging once closed', async () => {
      const pool = (await createEmbedderPool({ modelDir: MODEL_DIR, workers: 1, threadsPerWorker: 1, batchSize: 4 }))!;
      const work = expect(pool.embed(Array.from({ length: 40 }, (_, i) => `text ${i}`), 'passage')).rejects.toThrow(/closed/);
      await pool.close();

      await work;
      await expect(pool.embed(['late'], 'query')).rejects.toThrow(/closed/);
    });
  });
}
