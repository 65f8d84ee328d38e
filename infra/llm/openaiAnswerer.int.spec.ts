import type { Passage } from '../../services/core/ports';
import { startFakeOpenAI, type FakeOpenAI } from '../../test/support/fakeOpenAI';
import { CitationFilter, createOpenAIAnswerer, NOT_FOUND_ANSWER, UpstreamModelError, type OpenAIAnswererOptions } from './openaiAnswerer';

const passages: Passage[] = [
  {
    documentId: 'd1',
    filename: 'handbook.md',
    chunkIndex: 0,
    score: 0.9,
    text: 'Employees may carry over five days of unused vacation into the next year. Requests go to the manager.',
  },
  {
    documentId: 'd2',
    filename: 'expenses.pdf',
    chunkIndex: 3,
    score: 0.8,
    text: 'Travel expenses are reimbursed within thirty days when original receipts are attached. Taxis need approval.',
  },
];
const question = 'How fast are travel expenses reimbursed?';

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

describe('OpenAI-compatible answerer against a local fake model server', () => {
  let fake: FakeOpenAI;
  const options = (over: Partial<OpenAIAnswererOptions> = {}): OpenAIAnswererOptions => ({
    baseURL: fake.url,
    apiKey: 'sk-test',
    model: 'fake-chat',
    timeoutMs: 2_000,
    maxRetries: 2,
    ...over,
  });

  beforeAll(async () => {
    fake = await startFakeOpenAI();
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.setMode('normal');
    fake.requests.length = 0;
  });

  it('answers from the passage that holds the answer and cites it', async () => {
    const answerer = createOpenAIAnswerer(options());

    const answer = await answerer.answer({ question, passages });

    expect(answer).toMatchObject({
      answer: 'Travel expenses are reimbursed within thirty days when original receipts are attached. [2]',
      mode: 'generative',
      model: 'fake-chat',
      citations: [2],
      removedCitations: 0,
    });
    expect(answer.usage?.completionTokens).toBeGreaterThan(0);
    expect(answerer.id).toBe('openai:fake-chat');
    const sent = fake.requests[0]!;
    expect(sent.authorization).toBe('Bearer sk-test');
    const prompt = JSON.stringify(sent.body);
    expect(prompt).toContain('[1] (handbook.md, chunk 0) Employees may carry over');
    expect(prompt).toContain('[2] (expenses.pdf, chunk 3) Travel expenses');
    expect(prompt).toContain(NOT_FOUND_ANSWER);
  });

  it('refuses when the passages do not hold the answer', async () => {
    const answer = await createOpenAIAnswerer(options()).answer({ question: 'Who founded the zeppelin museum?', passages });

    expect(answer.answer).toBe(NOT_FOUND_ANSWER);
    expect(answer.citations).toEqual([]);
  });

  it('refuses without calling the model when nothing was retrieved', async () => {
    const answer = await createOpenAIAnswerer(options()).answer({ question, passages: [] });

    expect(answer.answer).toBe(NOT_FOUND_ANSWER);
    expect(fake.requests).toHaveLength(0);
  });

  it('streams tokens that add up to the final answer', async () => {
    const tokens: string[] = [];

    const answer = await createOpenAIAnswerer(options()).stream({ question, passages }, (t) => tokens.push(t));

    expect(tokens.length).toBeGreaterThan(5);
    expect(tokens.join('').trim()).toBe(answer.answer);
    expect(answer.answer).toMatch(/thirty days .*\[2\]$/);
    expect(answer.citations).toEqual([2]);
    expect(answer.usage?.promptTokens).toBeGreaterThan(0);
    expect((fake.requests[0]!.body as { stream?: boolean }).stream).toBe(true);
  });

  it('removes a citation that points at no passage and counts it', async () => {
    fake.setMode('invalidCitation');
    const answerer = createOpenAIAnswerer(options());

    const answer = await answerer.answer({ question, passages });
    const tokens: string[] = [];
    const streamed = await answerer.stream({ question, passages }, (t) => tokens.push(t));

    for (const a of [answer, streamed]) {
      expect(a.answer).not.toContain('[99]');
      expect(a.answer).toMatch(/\[2\]$/);
      expect(a.citations).toEqual([2]);
      expect(a.removedCitations).toBe(1);
    }
    expect(tokens.join('')).not.toContain('99');
  });

  it('gives up on a slow model with a 504 within its timeout', async () => {
    fake.setMode({ slow: 10_000 });
    const started = Date.now();

    const err = await failure(createOpenAIAnswerer(options({ timeoutMs: 400 })).answer({ question, passages }));

    expect(err).toBeInstanceOf(UpstreamModelError);
    expect((err as UpstreamModelError).status).toBe(504);
    expect(Date.now() - started).toBeLessThan(5_000); // its timeout, not the model's 10 s (slack for a loaded machine)
  });

  it('gives up on a stream that stalls with a 504', async () => {
    fake.setMode({ stall: 10_000 });
    const tokens: string[] = [];
    const started = Date.now();

    const err = await failure(createOpenAIAnswerer(options({ stallTimeoutMs: 300 })).stream({ question, passages }, (t) => tokens.push(t)));

    expect(err).toBeInstanceOf(UpstreamModelError);
    expect((err as UpstreamModelError).status).toBe(504);
    expect(Date.now() - started).toBeLessThan(5_000); // its timeout, not the model's 10 s (slack for a loaded machine)
  });

  it.each([500, 429] as const)('turns HTTP %i into a 502 after its retries', async (status) => {
    fake.setMode({ status });

    const err = await failure(createOpenAIAnswerer(options({ maxRetries: 2 })).answer({ question, passages }));

    expect(err).toBeInstanceOf(UpstreamModelError);
    expect(err).toMatchObject({ status: 502, upstreamStatus: status });
    expect(fake.requests).toHaveLength(3);
  });

  it('fails a stream that breaks off with a 502 instead of hanging or truncating', async () => {
    fake.setMode('brokenStream');
    const tokens: string[] = [];
    const started = Date.now();

    const err = await failure(createOpenAIAnswerer(options({ timeoutMs: 20_000 })).stream({ question, passages }, (t) => tokens.push(t)));

    expect(err).toBeInstanceOf(UpstreamModelError);
    expect((err as UpstreamModelError).status).toBe(502);
    expect(tokens.length).toBeGreaterThan(0);
    expect(fake.requests).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(10_000); // at the break, not at the 20 s timeout
  });

  it('stops when the caller aborts, without calling it an upstream failure', async () => {
    fake.setMode({ slow: 10_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);

    const err = await failure(createOpenAIAnswerer(options()).answer({ question, passages, signal: controller.signal }));

    expect(err).not.toBeInstanceOf(UpstreamModelError);
    expect((err as Error).name).toBe('AbortError');
  });
});

describe('citation filter', () => {
  const text = 'Five days carry over [1]. Receipts are needed [2, 7]. Taxis need approval [9][2].';

  it('keeps valid citations, drops the others with their space, and counts them', () => {
    const filter = new CitationFilter(2);
    const out = filter.push(text) + filter.finish();

    expect(out).toBe('Five days carry over [1]. Receipts are needed [2]. Taxis need approval [2].');
    expect(filter.citations()).toEqual([1, 2]);
    expect(filter.removed).toBe(2);
  });

  it('gives the same text however the stream splits it', () => {
    const whole = new CitationFilter(2);
    const expected = whole.push(text) + whole.finish();
    for (let a = 1; a < text.length; a++) {
      for (const b of [a + 1, a + 3, a + 7]) {
        const filter = new CitationFilter(2);
        const out = filter.push(text.slice(0, a)) + filter.push(text.slice(a, b)) + filter.push(text.slice(b)) + filter.finish();
        expect(out).toBe(expected);
        expect(filter.removed).toBe(2);
      }
    }
  });
});
