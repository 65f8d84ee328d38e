import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hashingVector } from '../../infra/embeddings/hashing';

/**
 * A small local server speaking the OpenAI HTTP API (chat completions, streaming, embeddings,
 * models), because no real model server runs here. Its answers are derived from the prompt: it
 * picks the passage `[n] (file, chunk k) text` sharing most words with the question and answers
 * with that passage's first sentence cited `[n]`, or refuses when no passage shares a word.
 */
export type FakeOpenAIMode =
  | 'normal'
  /** Streams a few chunks, then destroys the connection. */
  | 'brokenStream'
  /** Answers as usual, plus a citation [99] that points at no passage. */
  | 'invalidCitation'
  /** Waits this long before answering at all. */
  | { slow: number }
  /** Streams the first chunk, then stays silent this long before the rest. */
  | { stall: number }
  /** Fails every request with this status (with `retry-after-ms: 10`, so client retries are quick). */
  | { status: 429 | 500 };

export interface RecordedRequest {
  method: string;
  path: string;
  body: unknown;
  authorization: string | undefined;
}

export interface FakeOpenAI {
  /** Base URL for the openai client, ending in /v1. */
  url: string;
  setMode(mode: FakeOpenAIMode): void;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export const FAKE_REFUSAL = 'I could not find the answer in the provided documents.';
const STOPWORDS = new Set('a an and are as at be by does do for from how in is it of on or the to was what when where which who why with'.split(' '));

function words(text: string): Set<string> {
  return new Set((text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).filter((w) => !STOPWORDS.has(w)));
}

function firstSentence(text: string): string {
  const match = /^(.*?[.!?])(\s|$)/s.exec(text.trim());
  return (match?.[1] ?? text.trim()).trim();
}

/** The answer a careful model would give to the prompt built by infra/llm/openaiAnswerer.ts. */
export function fakeAnswer(prompt: string): string {
  const question = /Question:\s*([\s\S]*)$/.exec(prompt)?.[1] ?? '';
  const asked = words(question);
  let best: { n: number; text: string; overlap: number } | null = null;
  for (const m of prompt.matchAll(/^\[(\d+)\] \([^\n]*?\) (.*)$/gm)) {
    const text = m[2] ?? '';
    let overlap = 0;
    for (const w of words(text)) if (asked.has(w)) overlap++;
    if (overlap > 0 && (!best || overlap > best.overlap)) best = { n: Number(m[1]), text, overlap };
  }
  return best ? `${firstSentence(best.text)} [${best.n}]` : FAKE_REFUSAL;
}

/** Pieces the way a tokenizer streams them; brackets alone, so citations arrive split. */
function streamPieces(text: string): string[] {
  return text.match(/\[|\]|[^[\]\s]+\s*|\s+/g) ?? [];
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      const raw = Buffer.concat(parts).toString('utf8');
      try {
        resolve(raw ? JSON.parse(raw) : null);
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers });
  res.end(payload);
}

export async function startFakeOpenAI(opts: { dimensions?: number } = {}): Promise<FakeOpenAI> {
  let mode: FakeOpenAIMode = 'normal';
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sleep = (ms: number, res: ServerResponse) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve(!res.destroyed);
      }, ms);
      timers.add(timer);
      res.once('close', () => {
        clearTimeout(timer);
        timers.delete(timer);
        resolve(false);
      });
    });

  async function chat(body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const messages = (body.messages as Array<{ role: string; content: string }> | undefined) ?? [];
    const prompt = [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';
    let answer = fakeAnswer(prompt);
    if (mode === 'invalidCitation') answer = answer.replace(/\.?$/, (end) => ` [99]${end}`);
    const model = String(body.model ?? 'fake-chat');
    const id = `chatcmpl-fake-${requests.length}`;
    const created = Math.floor(Date.now() / 1000);
    const promptTokens = prompt.split(/\s+/).length;
    const completionTokens = answer.split(/\s+/).length;
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };

    if (body.stream !== true) {
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: answer }, finish_reason: 'stop', logprobs: null }],
        usage,
      });
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    const send = (delta: Record<string, unknown>, finish: string | null) =>
      res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
    send({ role: 'assistant', content: '' }, null);
    const pieces = streamPieces(answer);
    for (const [i, piece] of pieces.entries()) {
      if (mode === 'brokenStream' && i === 2) {
        // Let the headers and first chunks reach the client, so this is a break mid-stream and not a refused request.
        if (await sleep(50, res)) res.socket?.destroy();
        return;
      }
      if (typeof mode === 'object' && 'stall' in mode && i === 1 && !(await sleep(mode.stall, res))) return;
      send({ content: piece }, null);
    }
    send({}, 'stop');
    const streamOptions = body.stream_options as { include_usage?: boolean } | undefined;
    if (streamOptions?.include_usage) res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`);
    res.end('data: [DONE]\n\n');
  }

  function embeddings(body: Record<string, unknown>, res: ServerResponse): void {
    const input = body.input;
    const texts = Array.isArray(input) ? input.map(String) : [String(input ?? '')];
    const dimensions = typeof body.dimensions === 'number' ? body.dimensions : (opts.dimensions ?? 384);
    const base64 = body.encoding_format === 'base64';
    const data = texts.map((text, index) => {
      const vector = hashingVector(text, dimensions);
      const embedding = base64 ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64') : Array.from(vector);
      return { object: 'embedding', index, embedding };
    });
    const tokens = texts.reduce((n, t) => n + t.split(/\s+/).length, 0);
    sendJson(res, 200, { object: 'list', data, model: String(body.model ?? 'fake-embed'), usage: { prompt_tokens: tokens, total_tokens: tokens } });
  }

  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      let body: unknown = null;
      try {
        body = await readBody(req);
      } catch {
        return sendJson(res, 400, { error: { message: 'invalid JSON', type: 'invalid_request_error' } });
      }
      requests.push({ method: req.method ?? 'GET', path, body, authorization: req.headers.authorization });

      if (typeof mode === 'object' && 'slow' in mode && !(await sleep(mode.slow, res))) return;
      if (typeof mode === 'object' && 'status' in mode) {
        const type = mode.status === 429 ? 'rate_limit_exceeded' : 'server_error';
        return sendJson(res, mode.status, { error: { message: `fake ${type}`, type, code: type } }, { 'retry-after-ms': '10' });
      }
      const json = (body ?? {}) as Record<string, unknown>;
      if (req.method === 'POST' && path === '/v1/chat/completions') return chat(json, res);
      if (req.method === 'POST' && path === '/v1/embeddings') return embeddings(json, res);
      if (req.method === 'GET' && path === '/v1/models') {
        const created = Math.floor(Date.now() / 1000);
        return sendJson(res, 200, {
          object: 'list',
          data: ['fake-chat', 'fake-embed'].map((id) => ({ id, object: 'model', created, owned_by: 'fake' })),
        });
      }
      sendJson(res, 404, { error: { message: `no route ${req.method} ${path}`, type: 'invalid_request_error' } });
    })().catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: String(err), type: 'server_error' } });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    setMode(next) {
      mode = next;
    },
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
