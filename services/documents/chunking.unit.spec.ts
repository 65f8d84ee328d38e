import { chunkDocument, embeddingText, splitSentences } from './chunking';
import type { Chunk, ChunkOptions } from './chunking';
import { parseDocument } from './parsing';
import type { Block, ParsedDocument } from './parsing';

const countWords = (s: string): number => s.match(/\S+/g)?.length ?? 0;
/** A cheap stand-in for a subword tokenizer: about four characters a token. */
const approxTokens = (s: string): number => Math.ceil(s.length / 4);

const md = (blocks: Block[]): ParsedDocument => ({ format: 'markdown', blocks });
const h = (level: number, text: string): Block => ({ kind: 'heading', level, text });
const p = (text: string, page?: number): Block => (page === undefined ? { kind: 'paragraph', text } : { kind: 'paragraph', text, page });

/** `n` distinct sentences of `words` words each, e.g. "S3 w1 w2 ... ." */
function sentences(prefix: string, n: number, words = 8): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i} ${Array.from({ length: words - 1 }, (_, w) => `word${w}`).join(' ')}.`);
}

function opts(overrides: Partial<ChunkOptions> = {}): ChunkOptions {
  return { maxTokens: 64, overlapTokens: 0, countTokens: countWords, ...overrides };
}

function expectWithinBudget(chunks: Chunk[], o: ChunkOptions): void {
  for (const c of chunks) {
    expect(c.tokenCount).toBe(o.countTokens(c.text));
    expect(o.countTokens(embeddingText(c))).toBeLessThanOrEqual(o.maxTokens);
  }
}

describe('splitSentences', () => {
  it('splits at sentence ends and keeps each sentence verbatim', () => {
    const text = 'Install it first. Then run "npm test"! Does it pass? Yes… mostly.';
    expect(splitSentences(text)).toEqual(['Install it first.', 'Then run "npm test"!', 'Does it pass?', 'Yes… mostly.']);
  });

  it('does not split after abbreviations, initials, decimals or before lowercase', () => {
    const text = 'See e.g. the docs by J. Smith and Dr. Who on v2.5 of the U.S. site. It costs 3.50 euros, i.e. little. ok.';
    expect(splitSentences(text)).toEqual(['See e.g. the docs by J. Smith and Dr. Who on v2.5 of the U.S. site.', 'It costs 3.50 euros, i.e. little. ok.']);
  });

  it('ends sentences at blank lines and short lines, but joins hard-wrapped prose', () => {
    const text = [
      'Overview',
      'This paragraph was wrapped by an editor at a fixed width of',
      'about sixty characters, so its lines are one sentence.',
      '',
      '- first item',
      '- second item',
    ].join('\n');
    expect(splitSentences(text)).toEqual([
      'Overview',
      'This paragraph was wrapped by an editor at a fixed width of\nabout sixty characters, so its lines are one sentence.',
      '- first item',
      '- second item',
    ]);
  });

  it('splits CJK sentences without spaces', () => {
    expect(splitSentences('今日は晴れです。明日は雨です！')).toEqual(['今日は晴れです。', '明日は雨です！']);
  });
});

describe('chunkDocument', () => {
  it('validates its options', () => {
    const doc = md([p('x')]);
    expect(() => chunkDocument(doc, opts({ maxTokens: 257 }))).toThrow(RangeError);
    expect(() => chunkDocument(doc, opts({ maxTokens: 4 }))).toThrow(RangeError);
    expect(() => chunkDocument(doc, opts({ overlapTokens: 40 }))).toThrow(RangeError);
    expect(() => chunkDocument(doc, opts({ overlapTokens: -1 }))).toThrow(RangeError);
    expect(chunkDocument(md([]), opts())).toEqual([]);
  });

  it('carries the heading path, merges a small subsection and never crosses a top-level section', () => {
    const doc = md([
      h(1, 'Guide'),
      p('Read this guide first.'),
      h(2, 'Install'),
      p('Run the installer.'),
      h(1, 'Reference'),
      p('All the options.'),
    ]);
    expect(chunkDocument(doc, opts())).toEqual([
      { index: 0, text: 'Read this guide first.\n\nInstall\n\nRun the installer.', headingPath: ['Guide'], page: null, tokenCount: 8 },
      { index: 1, text: 'All the options.', headingPath: ['Reference'], page: null, tokenCount: 3 },
    ]);
  });

  it('starts a new chunk at a subsection that does not fit, with the full heading path', () => {
    const intro = sentences('I', 4).join(' ');
    const install = sentences('N', 4).join(' ');
    const doc = md([h(1, 'Guide'), p(intro), h(2, 'Install'), p(install), h(3, 'Linux'), p('Use apt.')]);
    const chunks = chunkDocument(doc, opts({ maxTokens: 48 }));
    expect(chunks.map((c) => [c.headingPath, c.text])).toEqual([
      [['Guide'], intro],
      [['Guide', 'Install'], `${install}\n\nLinux\n\nUse apt.`],
    ]);
  });

  it('packs whole paragraphs up to the budget', () => {
    const paras = sentences('P', 20, 10);
    const o = opts({ maxTokens: 64 });
    const chunks = chunkDocument(md([h(1, 'Doc'), ...paras.map((s) => p(s))]), o);
    expectWithinBudget(chunks, o);
    // "Doc\n\n" costs one token: 63 left, six 10-word paragraphs per chunk.
    expect(chunks.map((c) => c.text.split('\n\n').length)).toEqual([6, 6, 6, 2]);
    expect(chunks.flatMap((c) => c.text.split('\n\n'))).toEqual(paras);
  });

  it('splits a long paragraph at sentence boundaries', () => {
    const all = sentences('S', 30, 8);
    const o = opts({ maxTokens: 40 });
    const chunks = chunkDocument(md([p(all.join(' '))]), o);
    expectWithinBudget(chunks, o);
    expect(chunks.length).toBe(6);
    for (const c of chunks) expect(splitSentences(c.text).every((s) => all.includes(s))).toBe(true);
    expect(chunks.flatMap((c) => splitSentences(c.text))).toEqual(all);
  });

  it('splits a long sentence at word boundaries, and a giant word by characters', () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i}`);
    const o = opts({ maxTokens: 32 });
    const chunks = chunkDocument(md([p(`${words.join(' ')}.`)]), o);
    expectWithinBudget(chunks, o);
    expect(chunks.flatMap((c) => c.text.split(' '))).toEqual([...words.slice(0, -1), `${words[199]}.`]);

    const giant = 'x'.repeat(5000);
    const o2 = opts({ maxTokens: 64, countTokens: approxTokens });
    const pieces = chunkDocument(md([p(giant)]), o2);
    expectWithinBudget(pieces, o2);
    expect(pieces.map((c) => c.text).join('')).toBe(giant);
  });

  it('splits long code blocks and tables at line boundaries', () => {
    const code = Array.from({ length: 60 }, (_, i) => `const v${i} = compute(${i});`).join('\n');
    const table = Array.from({ length: 60 }, (_, i) => `row${i} | value ${i}`).join('\n');
    const o = opts({ maxTokens: 48 });
    const chunks = chunkDocument(md([{ kind: 'code', text: code }, { kind: 'table', text: table }]), o);
    expectWithinBudget(chunks, o);
    expect(chunks.filter((c) => c.text.includes('compute')).map((c) => c.text).join('\n')).toBe(code);
    expect(chunks.filter((c) => c.text.includes('row')).map((c) => c.text).join('\n')).toBe(table);
  });

  it('overlaps consecutive chunks of a section by whole sentences, within the overlap budget', () => {
    const all = sentences('S', 30, 8);
    const o = opts({ maxTokens: 48, overlapTokens: 16 });
    const chunks = chunkDocument(md([h(1, 'Doc'), p(all.join(' '))]), o);
    expectWithinBudget(chunks, o);
    for (let i = 1; i < chunks.length; i++) {
      const prev = splitSentences(chunks[i - 1]!.text);
      const next = splitSentences(chunks[i]!.text);
      // Two 8-word sentences fit in 16 tokens: each chunk repeats the previous chunk's last two.
      expect(next.slice(0, 2)).toEqual(prev.slice(-2));
    }
    // Nothing is lost: every sentence is in some chunk.
    const covered = new Set(chunks.flatMap((c) => splitSentences(c.text)));
    expect(all.every((s) => covered.has(s))).toBe(true);
  });

  it('does not overlap across sections, nor with overlap 0', () => {
    const a = sentences('A', 10, 8);
    const b = sentences('B', 10, 8);
    const doc = md([h(1, 'A'), ...a.map((s) => p(s)), h(1, 'B'), ...b.map((s) => p(s))]);
    const chunks = chunkDocument(doc, opts({ maxTokens: 40, overlapTokens: 8 }));
    const firstOfB = chunks.find((c) => c.headingPath[0] === 'B')!;
    expect(firstOfB.text.startsWith('B0 ')).toBe(true);
    expect(chunks.some((c) => c.headingPath[0] === 'A' && c.text.startsWith('A3') && c.text.includes('A2'))).toBe(false);
    expect(chunks.filter((c) => c.headingPath[0] === 'A').slice(1).every((c) => /^A\d+ /.test(c.text))).toBe(true);

    const plain = chunkDocument(doc, opts({ maxTokens: 40, overlapTokens: 0 }));
    const texts = plain.flatMap((c) => splitSentences(c.text));
    expect(texts).toEqual([...a, ...b]);
  });

  it('never leaves a title or heading alone when the text after it can share its chunk', () => {
    const o = opts({ maxTokens: 64, overlapTokens: 8 });
    const title = 'simple shear flow past a flat plate .';
    // A body larger than any chunk, and one that fits a chunk alone but not beside the title.
    for (const body of [sentences('B', 12, 10).join(' '), sentences('B', 6, 10).join(' ')]) {
      const chunks = chunkDocument({ format: 'text', blocks: [p(title), p(body)] }, o);
      expectWithinBudget(chunks, o);
      expect(chunks[0]!.text.startsWith(`${title}\n\nB0 `)).toBe(true);
      expect(chunks.every((c) => c.tokenCount > countWords(title))).toBe(true);
    }
    // A heading followed by an oversized paragraph: in the path of every chunk, never a chunk's only text.
    const chunks = chunkDocument(md([h(1, 'Doc'), h(2, 'Results'), p(sentences('R', 12, 10).join(' '))]), o);
    expectWithinBudget(chunks, o);
    expect(chunks.every((c) => c.headingPath.join('/') === 'Doc/Results' && /^R\d+ /.test(c.text))).toBe(true);
  });

  it('fills every chunk of prose to at least half the budget, except the last of a section', () => {
    // Paragraphs of random sizes (deterministic), some larger than a chunk.
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n) + 1;
    const paras = Array.from({ length: 60 }, (_, i) => sentences(`P${i}s`, rand(9), rand(14)).join(' '));
    const o = opts({ maxTokens: 96, overlapTokens: 16 });
    const chunks = chunkDocument(md([h(1, 'Doc'), ...paras.map((t) => p(t))]), o);
    expectWithinBudget(chunks, o);
    const budget = o.maxTokens - 1; // "Doc" prefix
    expect(chunks.slice(0, -1).filter((c) => c.tokenCount < budget / 2)).toEqual([]);
    // In order, nothing lost: the words of the paragraphs, less the overlaps, come back.
    const words = paras.join(' ').split(/\s+/);
    const seen = chunks.flatMap((c) => c.text.split(/\s+/));
    let at = 0;
    for (const w of seen) if (w === words[at]) at++;
    expect(at).toBe(words.length);
  });

  it('ends sentences at a period set apart by a space, even before lowercase (tokenised text)', () => {
    expect(splitSentences('flow past a plate . results were obtained . see e.g. the tables .')).toEqual([
      'flow past a plate .',
      'results were obtained .',
      'see e.g. the tables .',
    ]);
  });

  it('keeps the page where each chunk starts', () => {
    const doc: ParsedDocument = {
      format: 'pdf',
      blocks: [h(1, 'Report'), p(sentences('A', 5).join(' '), 1), p(sentences('B', 5).join(' '), 2), p(sentences('C', 5).join(' '), 3)],
    };
    const chunks = chunkDocument(doc, opts({ maxTokens: 48 }));
    expect(chunks.map((c) => c.page)).toEqual([1, 2, 3]);
    expect(chunks.every((c) => c.headingPath[0] === 'Report')).toBe(true);
  });

  it('prefixes the heading path for the embedder and reserves room for it', () => {
    const longPath = ['Operations handbook for the platform team', 'Incident response and escalation', 'Paging'];
    const doc = md([h(1, longPath[0]!), h(2, longPath[1]!), h(3, longPath[2]!), ...sentences('X', 20, 10).map((s) => p(s))]);
    const o = opts({ maxTokens: 48 });
    const chunks = chunkDocument(doc, o);
    expectWithinBudget(chunks, o);
    expect(embeddingText(chunks[0]!)).toBe(`${longPath.join(' > ')}\n\n${chunks[0]!.text}`);
    expect(embeddingText({ text: 'no headings', headingPath: [] })).toBe('no headings');
  });

  it('stays within budget when the counter adds fixed tokens per call ([CLS]/[SEP])', () => {
    const withSpecials = (s: string): number => countWords(s) + 2;
    const o = opts({ maxTokens: 40, overlapTokens: 8, countTokens: withSpecials });
    const chunks = chunkDocument(md([h(1, 'Doc'), p(sentences('S', 20, 6).join(' '))]), o);
    expectWithinBudget(chunks, o);
    // Fixed tokens are counted once per chunk, not per sentence: chunks stay full.
    expect(chunks.every((c, i) => i === chunks.length - 1 || c.tokenCount >= 32)).toBe(true);
  });

  it('handles text before the first heading and skipped heading levels', () => {
    const doc = md([p('Preface.'), h(2, 'Deep'), p('Body.'), h(1, 'Top'), p('More.')]);
    expect(chunkDocument(doc, opts()).map((c) => [c.headingPath, c.text])).toEqual([
      [[], 'Preface.\n\nDeep\n\nBody.'],
      [['Top'], 'More.'],
    ]);
  });

  it('chunks a 10 MiB Markdown document within budget, in order, under its headings', async () => {
    const words = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma'.split(' ');
    let seed = 42;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const sentence = (): string => {
      const n = 5 + Math.floor(rnd() * 20);
      const w = Array.from({ length: n }, () => words[Math.floor(rnd() * words.length)]!).join(' ');
      return `${w[0]!.toUpperCase()}${w.slice(1)}.`;
    };
    const parts: string[] = [];
    let size = 0;
    for (let i = 0; size < 10 * 1024 * 1024; i++) {
      const r = rnd();
      const part =
        i % 40 === 0 ? `# Chapter ${i}`
        : r < 0.1 ? `## Section ${i}`
        : r < 0.15 ? `- ${sentence()}\n- ${sentence()}\n- ${sentence()}`
        : r < 0.18 ? `\`\`\`\n${'const x = compute(1);\n'.repeat(8)}\`\`\``
        : r < 0.2 ? Array.from({ length: 60 }, sentence).join(' ')
        : Array.from({ length: 1 + Math.floor(rnd() * 6) }, sentence).join(' ');
      parts.push(part);
      size += part.length + 2;
    }
    const doc = await parseDocument({ filename: 'big.md', bytes: Buffer.from(parts.join('\n\n')) });

    const o = opts({ maxTokens: 256, overlapTokens: 32, countTokens: approxTokens });
    // Its speed is measured by the benchmarks (npm run bench), never asserted here.
    const chunks = chunkDocument(doc, o);
    expect(chunks.filter((c) => approxTokens(embeddingText(c)) > 256 || c.tokenCount !== approxTokens(c.text))).toEqual([]);
    expect(chunks.every((c, i) => c.index === i && c.headingPath[0]?.startsWith('Chapter'))).toBe(true);
  });
});
