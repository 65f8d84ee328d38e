import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describeSkipped } from '../../test/support/skip';
import { UpstreamModelError } from '../llm/openaiAnswerer';
import { onnxCore } from './onnx';
import { createHashingEmbedder, hashingVector } from './hashing';
import { createOpenAIEmbedder, truncateInput } from './openai';
import { createEmbedderPool } from './pool';

/**
 * A query may be 8,000 characters (services/queries/api.ts): far beyond a small model's window.
 * Every embedder must answer for it (truncating to what it can read), never fail the search.
 */
const MODEL_DIR = join(__dirname, '..', '..', 'models', 'all-minilm-l6-v2-q');
const LONG = 'Reimbursement of travel expenses requires original receipts within thirty days. '.repeat(100).slice(0, 8000);

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot;
}

describe('hashing embedder on a long input', () => {
  it('embeds all of it (a lexical embedder has no window)', async () => {
    const [v] = await createHashingEmbedder(384).embed([`${LONG} zebra`], 'query');
    expect(Array.from(v!)).toEqual(Array.from(hashingVector(`${LONG} zebra`, 384)));
    expect(Array.from(v!)).not.toEqual(Array.from(hashingVector(LONG, 384)));
  });
});

if (!onnxCore.modelFilesPresent(MODEL_DIR)) {
  describeSkipped('ONNX embedder on a long input', `model files not found in ${MODEL_DIR} (npm run models:fetch)`);
} else {
  describe('ONNX embedder on a long input', () => {
    it('reads the first 256 tokens: what follows them does not change the vector', async () => {
      const pool = await createEmbedderPool({ modelDir: MODEL_DIR, workers: 1, threadsPerWorker: 1 });
      try {
        expect(pool).not.toBeNull();
        expect(pool!.countTokens(LONG)).toBeGreaterThan(1000);
        const [long, longWithOtherTail, start] = await pool!.embed([LONG, `${LONG} zebras galloping across the savannah`, LONG.slice(0, 300)], 'query');
        // int8 vectors shift slightly with batch composition; an unchanged window is ~1.
        expect(cosine(long!, longWithOtherTail!)).toBeGreaterThan(0.999);
        expect(cosine(long!, start!)).toBeLessThan(0.999);
      } finally {
        await pool?.close();
      }
    });
  });
}

/** A compatible server of a 512-token model that refuses longer inputs as TEI does (413). */
async function startRefusingServer(maxChars: number): Promise<{ url: string; inputs: string[][]; close(): Promise<void> }> {
  const inputs: string[][] = [];
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { input: string[] | string };
      const input = Array.isArray(body.input) ? body.input : [body.input];
      inputs.push(input);
      const longest = Math.max(...input.map((t) => t.length));
      const [status, payload] =
        longest > maxChars
          ? [413, { error: { message: `Input validation error: \`inputs\` must have less than 512 tokens. Given: ${Math.ceil(longest / 4)}`, type: 'Validation', code: 413 } }]
          : [200, { object: 'list', model: 'small', data: input.map((t, index) => ({ object: 'embedding', index, embedding: Array.from(hashingVector(t, 64)) })), usage: { prompt_tokens: 1, total_tokens: 1 } }];
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(payload));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1`, inputs, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('OpenAI-compatible embedder on a long input', () => {
  it('sends an 8,000-character input whole to a server that accepts it', async () => {
    const server = await startRefusingServer(100_000);
    try {
      const embedder = await createOpenAIEmbedder({ baseURL: server.url, apiKey: 'k', model: 'small', maxRetries: 0 });
      const [v] = await embedder.embed([LONG], 'query');
      expect(Array.from(v!)).toEqual(Array.from(hashingVector(LONG, 64)));
      expect(server.inputs.at(-1)).toEqual([LONG]);
    } finally {
      await server.close();
    }
  });

  it('cuts inputs a server refuses as too long until it accepts them, and keeps that cut', async () => {
    const server = await startRefusingServer(2000);
    try {
      const embedder = await createOpenAIEmbedder({ baseURL: server.url, apiKey: 'k', model: 'small', maxRetries: 0 });
      const short = 'How many vacation days do employees get?';
      const [long, unchanged] = await embedder.embed([LONG, short], 'query');
      const sent = server.inputs.at(-1)!;
      expect(sent[0]!.length).toBeLessThanOrEqual(2000);
      expect(LONG.startsWith(sent[0]!)).toBe(true);
      expect(sent[1]).toBe(short);
      expect(Array.from(long!)).toEqual(Array.from(hashingVector(sent[0]!, 64)));
      expect(Array.from(unchanged!)).toEqual(Array.from(hashingVector(short, 64)));

      // The next long input is cut before it is sent: no second refusal.
      const requestsBefore = server.inputs.length;
      await embedder.embed([`${LONG} again`], 'query');
      expect(server.inputs.length).toBe(requestsBefore + 1);
    } finally {
      await server.close();
    }
  });

  it('gives up, with the server\'s refusal, when even a short cut is refused', async () => {
    const server = await startRefusingServer(100);
    try {
      const embedder = await createOpenAIEmbedder({ baseURL: server.url, apiKey: 'k', model: 'small', maxRetries: 0 });
      const before = server.inputs.length;
      await expect(embedder.embed([LONG], 'query')).rejects.toBeInstanceOf(UpstreamModelError);
      // 8000, 4000, 2000, 1000, 500, 256 characters: a bounded number of attempts.
      expect(server.inputs.length - before).toBeLessThanOrEqual(7);
      expect(server.inputs.at(-1)![0]!.length).toBeLessThanOrEqual(256);
    } finally {
      await server.close();
    }
  });
});

describe('truncateInput', () => {
  it('cuts at a word boundary near the limit and never splits a surrogate pair', () => {
    expect(truncateInput('short', 10)).toBe('short');
    expect(truncateInput('alpha beta gamma delta', 18)).toBe('alpha beta gamma');
    expect(truncateInput('abcdefghij', 5)).toBe('abcde');
    const emoji = `${'a'.repeat(9)}\u{1F600}`;
    expect(truncateInput(emoji, 10)).toBe('a'.repeat(9));
  });
});
