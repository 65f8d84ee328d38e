/**
 * Structure-aware chunking: parsed blocks in, embedder-sized chunks out.
 *
 * - A chunk never spans two top-level sections. Inside one, a following subsection joins the
 *   current chunk only when the whole subsection fits; otherwise a new chunk starts at its heading.
 * - Blocks are packed whole up to the budget; a block too large for any chunk is split at sentence
 *   boundaries (lines for lists, code and tables), then at word boundaries, then by characters, and
 *   its pieces fill the current chunk first. Prose that does not fit beside a chunk still under half
 *   full is split the same way: a title or short lead block never stands alone as a chunk.
 * - Consecutive chunks of one section overlap by whole sentences (at most `overlapTokens`).
 * - Every chunk carries its heading path; the budget reserves room for the `embeddingText` prefix,
 *   so the text handed to the embedder fits `maxTokens`.
 *
 * Linear in the document size: every block and sentence is counted once, plus one count per chunk.
 */
import type { BlockKind, ParsedDocument } from './parsing';

export interface Chunk {
  index: number;
  text: string;
  headingPath: string[];
  /** 1-based page where the chunk starts (PDF), else null. */
  page: number | null;
  /** `countTokens(text)`. */
  tokenCount: number;
}

export interface ChunkOptions {
  /** Token budget of `embeddingText(chunk)`; at most `MAX_CHUNK_TOKENS`. */
  maxTokens: number;
  /** Whole sentences repeated from the previous chunk of the same section, up to this many tokens. */
  overlapTokens: number;
  countTokens: (s: string) => number;
}

export const MAX_CHUNK_TOKENS = 256;
const MIN_CHUNK_TOKENS = 8;
const PATH_SEPARATOR = ' > ';

/** The text to embed: the heading path as a first line, so a chunk is found by its section's name. */
export function embeddingText(chunk: Pick<Chunk, 'text' | 'headingPath'>): string {
  return chunk.headingPath.length ? `${chunk.headingPath.join(PATH_SEPARATOR)}\n\n${chunk.text}` : chunk.text;
}

// ---------------------------------------------------------------------------------------------
// Sentences
// ---------------------------------------------------------------------------------------------

/** Words that end in a period without ending a sentence. */
const ABBREVIATIONS = new Set([
  'mr', 'mrs', 'ms', 'dr', 'prof', 'sr', 'jr', 'st', 'vs', 'no', 'nos', 'fig', 'figs', 'eq', 'approx',
  'cf', 'al', 'inc', 'ltd', 'co', 'corp', 'dept', 'est', 'vol', 'p', 'pp', 'ch', 'sec', 'min', 'max',
]);
const SENTENCE_END = /[.!?…]+["'”’»)\]]*(?=\s)|[。！？]+["'”’」』)\]]*/gu;
const LINE_END_PUNCTUATION = /[.!?:;…。！？]["'”’»)\]]*$/u;
const LIST_MARKER = /^\s*(?:[-*+•]|\d{1,3}[.)])\s/;

/** Joins hard-wrapped prose lines; keeps short lines (items, headings, rows) apart. */
function logicalLines(segment: string): string[] {
  const out: string[] = [];
  for (const raw of segment.split('\n')) {
    const line = raw.trimEnd();
    if (line.trim() === '') continue;
    const prev = out[out.length - 1];
    if (
      prev !== undefined &&
      prev.trim().length >= 40 &&
      !LINE_END_PUNCTUATION.test(prev) &&
      !prev.includes(' | ') &&
      !LIST_MARKER.test(line)
    ) {
      out[out.length - 1] = `${prev}\n${line}`;
    } else {
      out.push(line);
    }
  }
  return out;
}

function isSpace(code: number): boolean {
  return (
    code === 32 || (code >= 9 && code <= 13) || code === 0xa0 ||
    (code >= 0x2000 && (code <= 0x200a || code === 0x2028 || code === 0x2029 || code === 0x202f || code === 0x205f || code === 0x3000))
  );
}

function isLowercaseAt(text: string, i: number): boolean {
  const code = text.charCodeAt(i);
  if (code < 128) return code >= 97 && code <= 122;
  return /^\p{Ll}/u.test(text.slice(i, i + 2));
}

function splitProse(text: string, out: string[]): void {
  let start = 0;
  SENTENCE_END.lastIndex = 0;
  for (let m = SENTENCE_END.exec(text); m; m = SENTENCE_END.exec(text)) {
    const end = m.index + m[0].length;
    let next = end;
    while (next < text.length && isSpace(text.charCodeAt(next))) next++;
    if (next >= text.length) break;
    const first = m[0].charCodeAt(0);
    const cjk = first === 0x3002 || first === 0xff01 || first === 0xff1f;
    // A period set apart by a space (tokenised text: "speeds . results") is no abbreviation.
    const detached = m.index > start && isSpace(text.charCodeAt(m.index - 1));
    if (!cjk && !detached) {
      if (isLowercaseAt(text, next)) continue;
      if (first === 46 /* . */ && (m[0].length === 1 || /^\.["'”’»)\]]+$/u.test(m[0]))) {
        let from = m.index;
        while (from > start && m.index - from < 24 && !isSpace(text.charCodeAt(from - 1))) from--;
        const word = text.slice(from, m.index).replace(/^[("'“‘[]+/u, '');
        if (word && (ABBREVIATIONS.has(word.toLowerCase()) || /^\p{Lu}$/u.test(word) || /^(?:\p{L}\.)+\p{L}$/u.test(word))) continue;
      }
    }
    const sentence = text.slice(start, end).trim();
    if (sentence) out.push(sentence);
    start = next;
  }
  const rest = text.slice(start).trim();
  if (rest) out.push(rest);
}

/**
 * Splits text into sentences, each a verbatim (trimmed) piece of the input. Blank lines and short
 * lines (list items, headings, table rows) end a sentence; hard-wrapped prose lines do not.
 */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  for (const segment of text.split(/\n[ \t]*\n/)) {
    for (const line of logicalLines(segment)) splitProse(line, out);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Chunking
// ---------------------------------------------------------------------------------------------

type Joiner = ' ' | '\n' | '';

interface Unit {
  text: string;
  /** Tokens of `text` alone, without the counter's fixed per-call overhead. */
  cost: number;
  path: string[];
  pathKey: string;
  heading: boolean;
  kind: BlockKind;
  page: number | null;
  /** Source block; consecutive pieces of one block are joined by `joinBefore`, blocks by a blank line. */
  block: number;
  joinBefore: Joiner;
  overlap: boolean;
}

function validate(opts: ChunkOptions): void {
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < MIN_CHUNK_TOKENS || opts.maxTokens > MAX_CHUNK_TOKENS) {
    throw new RangeError(`maxTokens must be an integer from ${MIN_CHUNK_TOKENS} to ${MAX_CHUNK_TOKENS}, got ${opts.maxTokens}`);
  }
  if (!Number.isInteger(opts.overlapTokens) || opts.overlapTokens < 0 || opts.overlapTokens > opts.maxTokens / 2) {
    throw new RangeError(`overlapTokens must be an integer from 0 to maxTokens / 2, got ${opts.overlapTokens}`);
  }
}

function isPrefix(prefix: string[], of: string[]): boolean {
  return prefix.length <= of.length && prefix.every((p, i) => of[i] === p);
}

function commonPrefix(paths: string[][]): string[] {
  const first = paths[0];
  if (!first) return [];
  let n = first.length;
  for (const p of paths) {
    let i = 0;
    while (i < n && i < p.length && p[i] === first[i]) i++;
    n = i;
  }
  return first.slice(0, n);
}

export function chunkDocument(doc: ParsedDocument, opts: ChunkOptions): Chunk[] {
  validate(opts);
  const { maxTokens, overlapTokens } = opts;
  // Tokenizers may add fixed tokens per call ([CLS]/[SEP]); count them once per text, not per piece.
  const overhead = Math.max(0, opts.countTokens(''));
  const cost = (s: string): number => Math.max(0, opts.countTokens(s) - overhead);
  const joinCost: Record<Joiner | '\n\n', number> = { '': 0, ' ': cost(' '), '\n': cost('\n'), '\n\n': cost('\n\n') };

  const prefixBudget = new Map<string, number>();
  const budgetFor = (path: string[], key: string): number => {
    let budget = prefixBudget.get(key);
    if (budget === undefined) {
      const prefix = path.length ? cost(`${path.join(PATH_SEPARATOR)}\n\n`) : 0;
      budget = Math.max(Math.floor(maxTokens / 2), maxTokens - prefix) - overhead;
      prefixBudget.set(key, budget);
    }
    return budget;
  };

  const blocks = doc.blocks.filter((b) => b.text.trim() !== '');
  const blockCost = blocks.map((b) => cost(b.text));
  // A "heading" too long to serve as a section name is content.
  const isHeading = blocks.map((b, i) => b.kind === 'heading' && blockCost[i]! <= maxTokens / 4);
  // Cost of each heading's own content, up to the next heading: decides whether a subsection joins.
  const sectionCost = new Array<number>(blocks.length).fill(0);
  for (let i = blocks.length - 1, acc = 0; i >= 0; i--) {
    if (isHeading[i]) {
      sectionCost[i] = acc;
      acc = 0;
    } else acc += blockCost[i]! + joinCost['\n\n'];
  }
  let topLevel = Number.POSITIVE_INFINITY;
  blocks.forEach((b, i) => {
    if (isHeading[i]) topLevel = Math.min(topLevel, b.level ?? 1);
  });

  const chunks: Chunk[] = [];
  let cur: Unit[] = [];
  let curCost = 0;
  let curBudget = maxTokens - overhead;
  let curHasContent = false;
  let previous: Unit[] = [];

  const sepBefore = (prev: Unit | undefined, next: Unit): number =>
    prev === undefined ? 0 : prev.block === next.block ? joinCost[next.joinBefore] : joinCost['\n\n'];

  const push = (u: Unit): void => {
    curCost += sepBefore(cur[cur.length - 1], u) + u.cost;
    cur.push(u);
    if (!u.heading) curHasContent = true;
  };

  /** Emits the current chunk (if it has content) and starts an empty one. */
  const flush = (): void => {
    if (curHasContent) {
      const content = cur.filter((u) => !u.heading);
      const path = commonPrefix(content.map((u) => u.path));
      // Headings named by the path are not repeated; those of merged subsections stay inline.
      const kept = cur.filter((u) => !u.heading || !isPrefix(u.path, path));
      let text = '';
      kept.forEach((u, i) => {
        const prev = kept[i - 1];
        text += prev === undefined ? u.text : (prev.block === u.block ? u.joinBefore : '\n\n') + u.text;
      });
      const start = content.find((u) => !u.overlap) ?? content[0]!;
      chunks.push({ index: chunks.length, text, headingPath: path, page: start.page, tokenCount: opts.countTokens(text) });
      previous = content;
    }
    cur = [];
    curCost = 0;
    curHasContent = false;
  };

  // Generous: a token is rarely longer than 16 characters.
  const overlapChars = Math.max(256, overlapTokens * 16);

  /** Whole sentences from the end of the previous chunk, when `next` continues its section. */
  const overlapFor = (next: Unit, room: number): Unit[] => {
    if (overlapTokens <= 0) return [];
    const last = previous[previous.length - 1];
    if (!last || last.pathKey !== next.pathKey) return [];
    const limit = Math.min(overlapTokens, room);
    const picked: Unit[] = [];
    let used = 0;
    for (let i = previous.length - 1; i >= 0; i--) {
      const src = previous[i]!;
      if (src.pathKey !== next.pathKey || (src.kind !== 'paragraph' && src.kind !== 'list')) break;
      // Only the tail can be repeated: split just enough of it (its first sentence may be cut).
      const from = Math.max(0, src.text.length - overlapChars);
      const sentences = splitSentences(src.text.slice(from));
      if (from > 0) sentences.shift();
      const joiner: Joiner = src.kind === 'list' ? '\n' : ' ';
      const taken: string[] = [];
      let takenCost = 0;
      for (let s = sentences.length - 1; s >= 0; s--) {
        const c = cost(sentences[s]!);
        const sep = taken.length ? joinCost[joiner] : picked.length ? joinCost['\n\n'] : 0;
        if (used + c + sep > limit) break;
        used += c + sep;
        takenCost += c + (taken.length ? joinCost[joiner] : 0);
        taken.unshift(sentences[s]!);
      }
      if (taken.length === 0) break;
      picked.unshift({ ...src, text: taken.join(joiner), cost: takenCost, overlap: true, heading: false });
      if (from > 0 || taken.length < sentences.length) break;
    }
    return picked;
  };

  /** Packs `u` into the current chunk when it fits, else starts the next chunk (with overlap). */
  const addContent = (u: Unit): void => {
    if (!curHasContent) {
      curBudget = budgetFor(u.path, u.pathKey);
      push(u);
      return;
    }
    const sep = sepBefore(cur[cur.length - 1], u);
    if (curCost + sep + u.cost <= curBudget) {
      push(u);
      return;
    }
    // Prose that does not fit beside a chunk still under half full is cut (sentences, then words)
    // to fill it: a title or a short lead block never stands alone when the text after it can share
    // its chunk. The room is at least half a chunk, so whole sentences usually fit.
    if ((u.kind === 'paragraph' || u.kind === 'list') && curCost < curBudget / 2) {
      const pieces = splitOversized(u.text, u.kind, curBudget - curCost - sep);
      if (pieces.length > 1) {
        pieces.forEach((piece, i) => addContent({ ...u, text: piece.text, cost: piece.cost, joinBefore: i === 0 ? u.joinBefore : piece.joinBefore }));
        return;
      }
    }
    flush();
    curBudget = budgetFor(u.path, u.pathKey);
    const room = curBudget - u.cost - joinCost['\n\n'];
    for (const o of overlapFor(u, room)) push(o);
    push(u);
  };

  /** Pieces of a block too large for one chunk, each within `limit`. */
  const splitOversized = (text: string, kind: BlockKind, limit: number): { text: string; cost: number; joinBefore: Joiner }[] => {
    const pieces: { text: string; cost: number; joinBefore: Joiner }[] = [];
    const byLines = kind === 'code' || kind === 'table' || kind === 'list';
    const segments = byLines ? text.split('\n').filter((l) => l.trim() !== '') : splitSentences(text);
    for (const segment of segments) {
      const firstJoin: Joiner = byLines ? '\n' : ' ';
      const c = cost(segment);
      if (c <= limit) {
        pieces.push({ text: segment, cost: c, joinBefore: firstJoin });
        continue;
      }
      // Lists: sentences of an item before words.
      const sub = kind === 'list' ? splitSentences(segment) : [segment];
      sub.forEach((sentence, si) => {
        const sc = si === 0 ? c : cost(sentence);
        const join: Joiner = si === 0 ? firstJoin : ' ';
        if (sub.length > 1 && sc <= limit) {
          pieces.push({ text: sentence, cost: sc, joinBefore: join });
          return;
        }
        sentence.split(/\s+/).filter(Boolean).forEach((word, wi) => {
          const wj: Joiner = wi === 0 ? join : ' ';
          const wc = cost(word);
          if (wc <= limit) {
            pieces.push({ text: word, cost: wc, joinBefore: wj });
            return;
          }
          // A "word" longer than a chunk (a hash, base64): cut it by characters.
          const chars = Array.from(word);
          const size = Math.max(1, Math.floor((chars.length * limit) / wc));
          for (let k = 0; k < chars.length; ) {
            let n = Math.min(size, chars.length - k);
            let piece = chars.slice(k, k + n).join('');
            while (n > 1 && cost(piece) > limit) piece = chars.slice(k, k + (n = Math.floor(n / 2))).join('');
            pieces.push({ text: piece, cost: cost(piece), joinBefore: k === 0 ? wj : '' });
            k += n;
          }
        });
      });
    }
    return pieces;
  };

  const stack: { level: number; text: string }[] = [];
  let path: string[] = [];
  let pathKey = '';

  blocks.forEach((block, bi) => {
    const page = block.page ?? null;
    if (isHeading[bi]) {
      const level = block.level ?? 1;
      const headingCost = blockCost[bi]!;
      if (level <= topLevel) flush();
      else if (curHasContent && curCost + joinCost['\n\n'] * 2 + headingCost + sectionCost[bi]! > curBudget) flush();
      while (stack.length && stack[stack.length - 1]!.level >= level) stack.pop();
      stack.push({ level, text: block.text.replace(/\s+/g, ' ').trim() });
      path = stack.map((h) => h.text);
      pathKey = path.join('\u0000');
      push({ text: block.text, cost: headingCost, path, pathKey, heading: true, kind: 'heading', page, block: bi, joinBefore: '\n', overlap: false });
      return;
    }
    const kind = block.kind === 'heading' ? 'paragraph' : block.kind;
    const unit: Unit = { text: block.text, cost: blockCost[bi]!, path, pathKey, heading: false, kind, page, block: bi, joinBefore: ' ', overlap: false };
    const limit = budgetFor(path, pathKey);
    if (unit.cost <= limit) {
      addContent(unit);
      return;
    }
    // Too large for any chunk: its pieces are packed like blocks, the first ones filling the
    // current chunk.
    for (const piece of splitOversized(block.text, kind, limit)) {
      addContent({ ...unit, text: piece.text, cost: piece.cost, joinBefore: piece.joinBefore });
    }
  });
  flush();
  return chunks;
}
