import type { Passage } from '../core/ports';
import { createExtractiveAnswerer, EXTRACTIVE_MODEL, NO_ANSWER, terms } from './extractive';

function passage(text: string, score: number, i = 0): Passage {
  return { documentId: `doc-${i}`, filename: `doc-${i}.md`, chunkIndex: i, text, score };
}
const ranked = (...texts: string[]): Passage[] => texts.map((t, i) => passage(t, 1 / (i + 1), i));

/** Every sentence of the answer, with its citation removed, appears word for word in its passage. */
function expectVerbatim(answer: string, passages: Passage[]): void {
  const parts = [...answer.matchAll(/(.+?) \[(\d+)\](?: |$)/g)];
  expect(parts.length).toBeGreaterThan(0);
  expect(parts.map((m) => m[0]).join('').trim()).toBe(answer);
  for (const [, sentence, n] of parts) {
    const source = passages[Number(n) - 1]!.text.replace(/\s+/g, ' ');
    expect(source).toContain(sentence!);
  }
}

const handbook = ranked(
  'Employees receive 25 days of paid vacation per year. Vacation requests go through the HR portal. Unused days expire in March.',
  'The office is open from 8am to 6pm. Parking is free for employees.',
  'Remote work is allowed two days per week. Managers approve remote work requests.',
);

describe('extractive answerer', () => {
  const answerer = createExtractiveAnswerer();

  it('answers with the best sentence, quoted verbatim and cited', async () => {
    const result = await answerer.answer({ question: 'How many vacation days do employees get?', passages: handbook });
    expect(result.answer.startsWith('Employees receive 25 days of paid vacation per year. [1]')).toBe(true);
    expect(result).toMatchObject({ mode: 'extractive', model: EXTRACTIVE_MODEL, removedCitations: 0 });
    expect(result.citations).toEqual([1]);
    expectVerbatim(result.answer, handbook);
    expect(answerer.id).toBe('extractive-v1');
  });

  it('picks up to three sentences, ordered by passage rank, each with its citation', async () => {
    const passages = ranked(
      'Backups run nightly at 2am. The weather is nice.',
      'Backups are kept for 30 days in a second region.',
      'Restoring a backup takes about an hour. Lunch is at noon.',
      'Backups are encrypted with AES-256 before upload.',
    );
    const result = await answerer.answer({ question: 'How are backups run, kept and restored?', passages });
    const cited = [...result.answer.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]));
    expect(cited.length).toBeGreaterThanOrEqual(2);
    expect(cited.length).toBeLessThanOrEqual(3);
    expect(cited).toEqual([...cited].sort((a, b) => a - b));
    expect(result.citations).toEqual([...new Set(cited)]);
    expect(result.answer).not.toMatch(/weather|Lunch/);
    expectVerbatim(result.answer, passages);
  });

  it('never adds a sentence repeated by an overlapping chunk', async () => {
    const shared = 'The API rate limit is 100 requests per minute per token.';
    const passages = ranked(`Limits apply per tenant. ${shared}`, `${shared} Exceeding it returns HTTP 429.`, `${shared}`);
    const result = await answerer.answer({ question: 'What is the API rate limit per token?', passages });
    expect(result.answer.split(shared).length - 1).toBe(1);
    expectVerbatim(result.answer, passages);
  });

  it('weights rare terms above terms every passage shares', async () => {
    // "acme" is in every passage; "invoice" only in the third: that one decides.
    const passages = ranked('Acme makes widgets for industry.', 'Acme was founded in 1999 by two engineers.', 'Acme sends each invoice on the first of the month.');
    const result = await answerer.answer({ question: 'When does Acme send the invoice?', passages });
    expect(result.answer).toBe('Acme sends each invoice on the first of the month. [3]');
    expect(result.citations).toEqual([3]);
  });

  it('prefers the higher-ranked passage when sentences match equally', async () => {
    const passages = ranked('Support is available by email at any time.', 'Support is available by email at any time of day.');
    const result = await answerer.answer({ question: 'Is support available by email?', passages });
    expect(result.citations).toEqual([1]);
  });

  it.each([
    ['no passages', 'How many vacation days?', []],
    ['no shared meaningful term', 'What is the capital of Mongolia?', handbook],
    ['a question of stopwords only', 'What is it that you do?', handbook],
  ])('answers "%s" with the fixed no-answer sentence and no citations', async (_name, question, passages) => {
    const result = await answerer.answer({ question, passages: passages as Passage[] });
    expect(result).toEqual({ answer: NO_ANSWER, mode: 'extractive', model: EXTRACTIVE_MODEL, citations: [], removedCitations: 0 });
    expect(NO_ANSWER).toBe('I could not find an answer in your documents.');
  });

  it('does not answer with a bare heading line', async () => {
    const passages = ranked('Vacation\n\nRequests for leave go through the HR portal.');
    const result = await answerer.answer({ question: 'vacation', passages });
    expect(result.answer).toBe(NO_ANSWER);
  });

  it('matches word forms (install, installing, installation)', async () => {
    const passages = ranked('The installation takes five minutes on a laptop.', 'Uninstall by deleting the folder.');
    const result = await answerer.answer({ question: 'How long does installing take?', passages });
    expect(result.answer).toBe('The installation takes five minutes on a laptop. [1]');
    expect(terms('installing Installation installed')).toEqual(['install', 'install', 'install']);
  });

  it('matches text written without spaces (CJK)', async () => {
    const passages = ranked('会議は毎週月曜日に行われます。昼食は正午です。');
    const result = await answerer.answer({ question: '会議はいつ行われますか？', passages });
    expect(result.answer).toBe('会議は毎週月曜日に行われます。 [1]');
  });

  it('honours maxSentences', async () => {
    const one = createExtractiveAnswerer({ maxSentences: 1 });
    const result = await one.answer({ question: 'vacation requests remote work', passages: handbook });
    expect(result.answer.match(/\[\d+\]/g)).toHaveLength(1);
  });

  it('streams word tokens that add up to the answer, then resolves with it', async () => {
    const tokens: string[] = [];
    const streamed = await answerer.stream({ question: 'How many vacation days do employees get?', passages: handbook }, (t) => tokens.push(t));
    const whole = await answerer.answer({ question: 'How many vacation days do employees get?', passages: handbook });
    expect(streamed).toEqual(whole);
    expect(tokens.join('')).toBe(whole.answer);
    expect(tokens.length).toBe(whole.answer.split(' ').length);
    expect(tokens.every((t) => /^\S+\s?$/.test(t))).toBe(true);
  });

  it('is deterministic', async () => {
    const question = 'Who approves remote work and vacation requests?';
    const first = await answerer.answer({ question, passages: handbook });
    for (let i = 0; i < 5; i++) expect(await createExtractiveAnswerer().answer({ question, passages: handbook })).toEqual(first);
  });

  it('stops when the request is aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('client went away'));
    await expect(answerer.answer({ question: 'vacation', passages: handbook, signal: controller.signal })).rejects.toThrow('client went away');

    const midway = new AbortController();
    const tokens: string[] = [];
    await expect(
      answerer.stream({ question: 'How many vacation days do employees get?', passages: handbook, signal: midway.signal }, (t) => {
        tokens.push(t);
        if (tokens.length === 2) midway.abort();
      }),
    ).rejects.toThrow();
    expect(tokens).toHaveLength(2);
  });
});
