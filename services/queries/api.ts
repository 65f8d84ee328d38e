import { Router } from 'express';
import { z } from 'zod';
import { requireRole } from '../gateway/auth';
import { type AppDeps, principalOf, waitForProjections } from '../gateway/context';
import { parseBody } from '../gateway/validation';
import type { Answer, Passage } from '../core/ports';
import type { Hit } from '../search/knowledgeIndex';
import { search } from '../search/search';
import { resolveSnapshot } from '../snapshots/snapshots';
import { textHash } from './activity';

const chunkRef = (h: Hit) => `${h.documentId}:${h.version}:${h.chunkIndex}`;

export const MAX_TOP_K = 50;

const base = {
  top_k: z.number().int().min(1).max(MAX_TOP_K).default(5),
  document_id: z
    .string()
    .uuid()
    .transform((s) => s.toLowerCase())
    .optional(),
  mode: z.enum(['hybrid', 'keyword', 'semantic']).default('hybrid'),
  /** Read-your-writes: wait (bounded) until the read models have seen this position. */
  /** Search a point-in-time snapshot of the tenant's documents (built by replay --into). */
  as_of: z.string().regex(/^[a-z0-9_-]{1,40}$/, 'as_of must name a snapshot').optional(),
  min_position: z.string().regex(/^\d{1,24}-\d{1,24}$/, 'min_position must be a position returned by a command').optional(),
};
/**
 * Longest query or question, in UTF-16 code units after trimming. The embedders read only their
 * token window of it (all-MiniLM-L6-v2: the first 256 tokens); keyword search reads all of it.
 * 8,000 characters keep a request far below the 64 kB body limit even fully \u-escaped.
 */
export const MAX_QUERY_CHARS = 8000;
const queryText = () =>
  z
    .string()
    .trim()
    .min(1)
    .max(MAX_QUERY_CHARS, { message: `must be at most ${MAX_QUERY_CHARS} characters` });
const searchSchema = z.object({ query: queryText(), ...base }).strict();
const askSchema = z.object({ question: queryText(), ...base, stream: z.boolean().optional() }).strict();

export function hitView(h: Hit, n?: number) {
  return {
    ...(n !== undefined ? { n } : {}),
    document_id: h.documentId,
    filename: h.filename,
    chunk_index: h.chunkIndex,
    heading_path: h.headingPath,
    page: h.page,
    score: Number(h.score.toFixed(6)),
    text: h.text,
  };
}

function answerView(answer: Answer, hits: Hit[]) {
  return {
    answer: answer.answer,
    mode: answer.mode,
    model: answer.model,
    citations: answer.citations,
    removed_citations: answer.removedCitations,
    sources: hits.map((h, i) => hitView(h, i + 1)),
  };
}

export function queriesApi(deps: AppDeps): Router {
  const r = Router();

  r.post('/v1/search', requireRole('viewer'), async (req, res) => {
    const p = principalOf(req);
    const body = parseBody(searchSchema, req.body);
    if (body.min_position) await waitForProjections(deps, body.min_position, ['catalog'], p.tenantId);
    const scope = body.as_of ? await resolveSnapshot(deps.pool, p.tenantId, body.as_of) : p.tenantId;
    const hits = await search(deps, scope, { query: body.query, topK: body.top_k, mode: body.mode, documentId: body.document_id });
    deps.activity.record(p.tenantId, p.actor, req.correlationId ?? 'none', {
      type: 'SearchPerformed',
      data: { queryHash: textHash(body.query), mode: body.mode, topK: body.top_k, resultChunkIds: hits.map(chunkRef) },
    });
    res.json({ query: body.query, mode: body.mode, results: hits.map((h) => hitView(h)) });
  });

  r.post('/v1/ask', requireRole('viewer'), async (req, res) => {
    const p = principalOf(req);
    const body = parseBody(askSchema, req.body);
    if (body.min_position) await waitForProjections(deps, body.min_position, ['catalog'], p.tenantId);
    const scope = body.as_of ? await resolveSnapshot(deps.pool, p.tenantId, body.as_of) : p.tenantId;
    const hits = await search(deps, scope, { query: body.question, topK: body.top_k, mode: body.mode, documentId: body.document_id });
    const passages: Passage[] = hits.map((h) => ({
      documentId: h.documentId,
      filename: h.filename,
      chunkIndex: h.chunkIndex,
      text: h.text,
      score: h.score,
      headingPath: h.headingPath,
      page: h.page,
    }));
    const asked = (answer: Answer) =>
      deps.activity.record(p.tenantId, p.actor, req.correlationId ?? 'none', {
        type: 'QuestionAsked',
        data: {
          questionHash: textHash(body.question),
          model: answer.model,
          sourceChunkIds: hits.map(chunkRef),
          promptTokens: answer.usage?.promptTokens ?? 0,
          completionTokens: answer.usage?.completionTokens ?? 0,
        },
      });
    const wantsStream = body.stream === true || (req.headers.accept ?? '').includes('text/event-stream');
    if (!wantsStream) {
      const answer = await deps.answerer.answer({ question: body.question, passages });
      asked(answer);
      res.json(answerView(answer, hits));
      return;
    }
    // Server-sent events: `sources` first, then `token`s, then `done` with the checked answer.
    const abort = new AbortController();
    req.on('close', () => abort.abort());
    res.status(200).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.flushHeaders();
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    send('sources', hits.map((h, i) => hitView(h, i + 1)));
    try {
      const answer = await deps.answerer.stream({ question: body.question, passages, signal: abort.signal }, (token) => send('token', { text: token }));
      asked(answer);
      send('done', answerView(answer, hits));
    } catch (err) {
      const e = err as { status?: number; message: string };
      send('error', { type: 'https://tenant-rag.dev/problems/upstream-model', title: 'Answer generation failed', status: e.status ?? 502, detail: e.message });
    }
    res.end();
  });

  return r;
}
