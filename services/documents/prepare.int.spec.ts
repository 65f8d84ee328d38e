import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { TokenCounterSpec } from '../core/ports';
import { DocumentParseError } from './parsing';
import { createDocumentPreparer, prepareDocument, tokenCounter } from './prepare';

const MODEL_DIR = join(__dirname, '..', '..', 'models', 'all-minilm-l6-v2-q');
// The model's WordPiece tokenizer where its files are present (CI fetches them), else the approximate count.
const spec: TokenCounterSpec = existsSync(join(MODEL_DIR, 'tokenizer.json')) ? { kind: 'wordpiece', modelDir: MODEL_DIR } : { kind: 'approximate' };

function handbook(sections: number): Buffer {
  const parts: string[] = ['# Staff handbook'];
  for (let i = 0; i < sections; i++) {
    parts.push(`## Section ${i}: travel and expenses`);
    for (let p = 0; p < 4; p++) {
      parts.push(`Receipts for trip ${i}.${p} are submitted within thirty days. The finance team reimburses approved expenses in the next payroll run. Meals abroad are covered up to the daily allowance, and hotel stays need a manager's approval when they exceed three nights.`);
    }
  }
  return Buffer.from(parts.join('\n\n'), 'utf8');
}

describe('document preparer (parse + chunk in a worker thread)', () => {
  const preparer = createDocumentPreparer({ timeoutMs: 60_000 });
  afterAll(() => preparer.close());

  it('gives exactly the chunks of in-thread preparation, without counting on this thread', async () => {
    const input = { filename: 'handbook.md', bytes: handbook(40), declaredType: 'text/markdown' };
    const count = tokenCounter(spec);
    let countedHere = 0;
    const embedder = { tokenCounter: spec, countTokens: (t: string) => (countedHere++, count(t)) };
    const inWorker = await preparer.prepare(input, { maxTokens: 256, overlapTokens: 32, embedder });
    const inThread = await prepareDocument(input, { maxTokens: 256, overlapTokens: 32, countTokens: count });
    expect(inWorker.format).toBe('markdown');
    expect(inWorker.chunks.length).toBeGreaterThan(10);
    expect(inWorker.chunks).toEqual(inThread.chunks);
    expect(countedHere).toBe(0);
  });

  it("reports an unreadable file with the parser's reason", async () => {
    const embedder = { tokenCounter: spec, countTokens: tokenCounter(spec) };
    const err = await preparer.prepare({ filename: 'empty.txt', bytes: Buffer.alloc(0), declaredType: 'text/plain' }, { maxTokens: 256, overlapTokens: 32, embedder }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DocumentParseError);
    expect((err as DocumentParseError).code).toBe('empty');
  });

  it('refuses a document that takes longer than its bound, then serves the next one with a new worker', async () => {
    const embedder = { tokenCounter: spec, countTokens: tokenCounter(spec) };
    const err = await preparer.prepare({ filename: 'big.md', bytes: handbook(2000), declaredType: 'text/markdown' }, { maxTokens: 256, overlapTokens: 32, embedder, timeoutMs: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DocumentParseError);
    expect((err as DocumentParseError).reason).toMatch(/took longer than/);
    const ok = await preparer.prepare({ filename: 'small.md', bytes: handbook(2), declaredType: 'text/markdown' }, { maxTokens: 256, overlapTokens: 32, embedder });
    expect(ok.chunks.length).toBeGreaterThan(0);
  });

  it('counts on this thread when the embedder cannot say how it counts', async () => {
    let countedHere = 0;
    const embedder = { countTokens: (t: string) => (countedHere++, tokenCounter({ kind: 'approximate' })(t)) };
    const r = await preparer.prepare({ filename: 'notes.txt', bytes: Buffer.from('Short note. Another sentence here.'), declaredType: 'text/plain' }, { maxTokens: 256, overlapTokens: 32, embedder });
    expect(r.chunks).toHaveLength(1);
    expect(countedHere).toBeGreaterThan(0);
  });
});
