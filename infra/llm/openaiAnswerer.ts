import OpenAI, { APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { Answer, Answerer, AnswerRequest, Passage } from '../../services/core/ports';

/** The sentence the model must give when the passages do not hold the answer. */
export const NOT_FOUND_ANSWER = 'I could not find the answer in the provided documents.';

/**
 * The model server failed (502) or did not answer in time (504). Mapped to problem+json once, by
 * the gateway's error middleware.
 */
export class UpstreamModelError extends Error {
  override readonly name = 'UpstreamModelError';
  constructor(
    readonly status: 502 | 504,
    message: string,
    /** HTTP status the model server returned, when it returned one. */
    readonly upstreamStatus?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Why this process cut a request short; anything else that aborts is the caller's own signal. */
export type CutShort = 'deadline' | 'stall' | null;

/** Maps whatever the openai client threw to UpstreamModelError; the caller's own abort passes through. */
export function toUpstreamError(err: unknown, cutShort: CutShort, what: string, timeoutMs: number, callerSignal?: AbortSignal): Error {
  if (err instanceof UpstreamModelError) return err;
  if (cutShort === 'deadline') return new UpstreamModelError(504, `${what} did not answer within ${timeoutMs} ms`, undefined, { cause: err });
  if (cutShort === 'stall') return new UpstreamModelError(504, `${what} stream stalled for ${timeoutMs} ms`, undefined, { cause: err });
  if (callerSignal?.aborted || err instanceof APIUserAbortError) {
    const aborted = new Error(`${what} request aborted by the caller`, { cause: err });
    aborted.name = 'AbortError';
    return aborted;
  }
  if (err instanceof APIConnectionTimeoutError) return new UpstreamModelError(504, `${what} timed out`, undefined, { cause: err });
  if (err instanceof APIError && typeof err.status === 'number') {
    return new UpstreamModelError(502, `${what} returned HTTP ${err.status}`, err.status, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new UpstreamModelError(502, `${what} failed: ${message}`, undefined, { cause: err });
}

/**
 * Keeps only citations `[n]` with 1 <= n <= passageCount, counting the others. Works on a stream:
 * it holds back trailing whitespace and an unfinished `[12` until it knows what they are, so the
 * tokens a client sees add up to exactly the final answer.
 */
export class CitationFilter {
  /** Raw text not yet released: trailing whitespace plus citations a later token could extend. */
  private pending = '';
  private readonly cited = new Set<number>();
  removed = 0;

  constructor(private readonly passageCount: number) {}

  push(text: string): string {
    this.pending += text;
    const held = /\s*(?:\[\d+(?:\s*,\s*\d+)*\])*(?:\[[\d,\s]{0,24})?$/.exec(this.pending);
    const cut = held ? held.index : this.pending.length;
    const ready = this.pending.slice(0, cut);
    this.pending = this.pending.slice(cut);
    return this.clean(ready);
  }

  finish(): string {
    const rest = this.clean(this.pending);
    this.pending = '';
    return rest;
  }

  citations(): number[] {
    return [...this.cited].sort((a, b) => a - b);
  }

  /** A run like ` [9][2, 7]` keeps its valid numbers; a run left empty goes with its leading space. */
  private clean(text: string): string {
    return text.replace(/(\s*)((?:\[\d+(?:\s*,\s*\d+)*\])+)/g, (_m, space: string, run: string) => {
      const kept: string[] = [];
      for (const group of run.match(/\[[^\]]*\]/g) ?? []) {
        const numbers = group.slice(1, -1).split(',').map((n) => Number(n.trim()));
        const valid = numbers.filter((n) => n >= 1 && n <= this.passageCount);
        this.removed += numbers.length - valid.length;
        valid.forEach((n) => this.cited.add(n));
        if (valid.length > 0) kept.push(`[${valid.join(', ')}]`);
      }
      return kept.length === 0 ? '' : space + kept.join('');
    });
  }
}

const SYSTEM_PROMPT = [
  'You answer questions about a company\'s documents using only the numbered passages you are given.',
  'Every sentence that states a fact must end with the number of the passage that supports it in square brackets, like [1] or [2][3].',
  'Cite only passage numbers that exist. Do not use outside knowledge and do not guess.',
  `If the passages do not contain the answer, reply with exactly this sentence and nothing else: "${NOT_FOUND_ANSWER}"`,
].join('\n');

export function formatPassages(passages: readonly Passage[]): string {
  return passages
    .map((p, i) => `[${i + 1}] (${p.filename}, chunk ${p.chunkIndex}) ${p.text.replace(/\s+/g, ' ').trim()}`)
    .join('\n\n');
}

export function buildMessages(req: AnswerRequest): OpenAI.Chat.Completions.ChatCompletionMessageParam[] {
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    { role: 'user', content: `Passages:\n\n${formatPassages(req.passages)}\n\nQuestion: ${req.question}` },
  ];
}

export interface OpenAIAnswererOptions {
  baseURL: string;
  apiKey: string;
  model: string;
  /** Budget for a whole answer, retries included; for a stream, until it starts. */
  timeoutMs: number;
  /** Retries of 429/5xx/connection errors by the openai client, inside the timeout budget. */
  maxRetries: number;
  /** Longest silence between two stream chunks before the answer fails with 504 (default timeoutMs). */
  stallTimeoutMs?: number;
  /** Longest a stream may run in all (default 4 x timeoutMs). */
  streamTimeoutMs?: number;
  /** Sent only when set: reasoning models (o-series, gpt-5) reject any temperature but their default. */
  temperature?: number;
}

/**
 * Generative answers through any OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM). Never
 * hangs: a deadline covers the request with its retries, a stall timer every gap in a stream.
 */
export function createOpenAIAnswerer(opts: OpenAIAnswererOptions): Answerer {
  const client = new OpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey, timeout: opts.timeoutMs, maxRetries: opts.maxRetries });
  const stallMs = opts.stallTimeoutMs ?? opts.timeoutMs;
  const streamMs = opts.streamTimeoutMs ?? 4 * opts.timeoutMs;
  const what = `model server ${opts.model}`;
  const extra = opts.temperature === undefined ? {} : { temperature: opts.temperature };

  const refusal = (onToken?: (token: string) => void): Answer => {
    onToken?.(NOT_FOUND_ANSWER);
    return { answer: NOT_FOUND_ANSWER, mode: 'generative', model: opts.model, citations: [], removedCitations: 0 };
  };

  async function run(req: AnswerRequest, onToken?: (token: string) => void): Promise<Answer> {
    // Nothing retrieved: the model could only refuse or invent.
    if (req.passages.length === 0) return refusal(onToken);
    if (req.signal?.aborted) throw toUpstreamError(req.signal.reason, null, what, opts.timeoutMs, req.signal);

    const controller = new AbortController();
    let cutShort: CutShort = null;
    const cut = (why: Exclude<CutShort, null>) => () => {
      cutShort = why;
      controller.abort();
    };
    const onCallerAbort = () => controller.abort();
    req.signal?.addEventListener('abort', onCallerAbort, { once: true });
    let budgetMs = opts.timeoutMs;
    let deadline = setTimeout(cut('deadline'), budgetMs);
    let stall: NodeJS.Timeout | undefined;
    const filter = new CitationFilter(req.passages.length);
    const messages = buildMessages(req);

    try {
      if (!onToken) {
        const completion = await client.chat.completions.create({ model: opts.model, messages, ...extra }, { signal: controller.signal });
        const content = completion.choices[0]?.message?.content ?? '';
        const answer = (filter.push(content) + filter.finish()).trim();
        return {
          answer,
          mode: 'generative',
          model: completion.model || opts.model,
          citations: filter.citations(),
          removedCitations: filter.removed,
          ...(completion.usage ? { usage: { promptTokens: completion.usage.prompt_tokens, completionTokens: completion.usage.completion_tokens } } : {}),
        };
      }

      const stream = await client.chat.completions.create(
        { model: opts.model, messages, stream: true, stream_options: { include_usage: true }, ...extra },
        { signal: controller.signal },
      );
      clearTimeout(deadline);
      budgetMs = streamMs;
      deadline = setTimeout(cut('deadline'), budgetMs);
      const armStall = () => {
        clearTimeout(stall);
        stall = setTimeout(cut('stall'), stallMs);
      };
      armStall();
      let text = '';
      let finished = false;
      let model = opts.model;
      let usage: Answer['usage'];
      const emit = (piece: string) => {
        if (!piece) return;
        text += piece;
        onToken(piece);
      };
      for await (const chunk of stream) {
        if (controller.signal.aborted) break;
        armStall();
        if (chunk.model) model = chunk.model;
        if (chunk.usage) usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens };
        const choice = chunk.choices[0];
        if (choice?.delta?.content) emit(filter.push(choice.delta.content));
        if (choice?.finish_reason) finished = true;
      }
      // The client ends the iteration quietly when aborted; a stall or the caller's abort is an error here.
      if (controller.signal.aborted) throw new Error('stream aborted');
      // A connection that closes before finish_reason is a truncated answer, not a short one.
      if (!finished) throw new UpstreamModelError(502, `${what} closed the stream before the answer was complete`);
      emit(filter.finish());
      return {
        answer: text.trim(),
        mode: 'generative',
        model,
        citations: filter.citations(),
        removedCitations: filter.removed,
        ...(usage ? { usage } : {}),
      };
    } catch (err) {
      throw toUpstreamError(err, cutShort, what, cutShort === 'stall' ? stallMs : budgetMs, req.signal);
    } finally {
      clearTimeout(deadline);
      clearTimeout(stall);
      req.signal?.removeEventListener('abort', onCallerAbort);
    }
  }

  return {
    id: `openai:${opts.model}`,
    answer: (req) => run(req),
    stream: (req, onToken) => run(req, onToken),
  };
}
