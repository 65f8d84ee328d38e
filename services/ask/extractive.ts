/**
 * Offline answers: the best 1-3 sentences of the retrieved passages, quoted word for word, each
 * followed by its citation `[n]`. No model, no network, deterministic.
 *
 * A sentence scores by the question terms it shares (weighted by an IDF computed over the
 * passages, so a term every passage has counts little), by matched adjacent question-term pairs,
 * and by a small prior from its passage's retrieval score and rank. Near-duplicates of a picked
 * sentence (overlapping chunks repeat sentences) are skipped.
 */
import type { Answer, AnswerRequest, Answerer, Passage } from '../core/ports';
import { splitSentences } from '../documents/chunking';

export const NO_ANSWER = 'I could not find an answer in your documents.';
export const EXTRACTIVE_MODEL = 'extractive-v1';

export interface ExtractiveAnswererOptions {
  /** At most this many sentences (1-3). Default 3. */
  maxSentences?: number;
  /** A further sentence must score at least this fraction of the best one. Default 0.6. */
  minRelativeScore?: number;
  /** Stop adding sentences past this many words. Default 120. */
  maxWords?: number;
}

const STOPWORDS = new Set(
  (
    'a about above after again against all am an and any are as at be because been before being below between both but by ' +
    'can could did do does doing down during each few for from further had has have having he her here hers herself him ' +
    'himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other ' +
    'our ours ourselves out over own same she should so some such than that the their theirs them themselves then there ' +
    'these they this those through to too under until up very was we were what when where which while who whom why will ' +
    'with would you your yours yourself yourselves also may might must shall us let lets get got please tell explain describe ' +
    'show give know want need anyone someone something thing things way ways one ones use used using'
  ).split(' '),
);

/** Light suffix stripping, so `installing`, `installed` and `installation` meet `install`. */
function stem(word: string): string {
  let w = word;
  if (w.length > 4 && w.endsWith('ies')) w = `${w.slice(0, -3)}y`;
  else if (w.length > 3 && w.endsWith('s') && !w.endsWith('ss') && !w.endsWith('us') && !w.endsWith('is')) w = w.slice(0, -1);
  if (w.length > 7 && w.endsWith('ation')) w = w.slice(0, -5);
  else if (w.length > 5 && w.endsWith('ing')) w = w.slice(0, -3);
  else if (w.length > 4 && w.endsWith('ed')) w = w.slice(0, -2);
  if (w.length > 4 && w.endsWith('e')) w = w.slice(0, -1);
  return w;
}

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;

/**
 * Meaningful terms of a text, in order: lowercase and stemmed, without stopwords or one-letter
 * words. Runs of CJK script, written without spaces, become overlapping character pairs.
 */
export function terms(text: string): string[] {
  const out: string[] = [];
  for (const m of text.toLowerCase().normalize('NFKC').matchAll(/[\p{L}\p{N}]+(?:['’][\p{L}]+)?/gu)) {
    const word = m[0].replace(/['’].*$/u, '');
    if (CJK.test(word)) {
      const chars = Array.from(word);
      if (chars.length === 1) out.push(word);
      for (let i = 1; i < chars.length; i++) out.push(chars[i - 1]! + chars[i]!);
      continue;
    }
    if (STOPWORDS.has(word)) continue;
    if (word.length < 2 && !/\p{N}/u.test(word)) continue;
    out.push(stem(word));
  }
  return out;
}

interface Candidate {
  passage: number;
  position: number;
  text: string;
  terms: Set<string>;
  score: number;
  words: number;
}

function jaccard(a: Set<string>, b: Set<string>): number {
  let shared = 0;
  for (const t of a) if (b.has(t)) shared++;
  const union = a.size + b.size - shared;
  return union === 0 ? 0 : shared / union;
}

function abortIfNeeded(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw signal.reason instanceof Error ? signal.reason : Object.assign(new Error('The answer was aborted'), { name: 'AbortError' });
  }
}

/** Picks the sentences and builds the answer text; pure. */
export function extractAnswer(
  question: string,
  passages: Passage[],
  options: ExtractiveAnswererOptions = {},
): { answer: string; citations: number[] } {
  const maxSentences = Math.min(3, Math.max(1, options.maxSentences ?? 3));
  const minRelative = options.minRelativeScore ?? 0.6;
  const maxWords = options.maxWords ?? 120;
  const none = { answer: NO_ANSWER, citations: [] };

  const questionTerms = [...new Set(terms(question))];
  if (questionTerms.length === 0 || passages.length === 0) return none;

  const sentencesByPassage = passages.map((p) => splitSentences(p.text).map((s) => s.replace(/\s+/g, ' ').trim()));
  const termsByPassage = sentencesByPassage.map((ss) => ss.map((s) => terms(s)));

  // IDF over passages (BM25's form, always positive).
  const n = passages.length;
  const df = new Map<string, number>();
  for (const perSentence of termsByPassage) {
    const seen = new Set(perSentence.flat());
    for (const t of questionTerms) if (seen.has(t)) df.set(t, (df.get(t) ?? 0) + 1);
  }
  const idf = (t: string): number => {
    const d = df.get(t) ?? 0;
    return Math.log(1 + (n - d + 0.5) / (d + 0.5));
  };
  const totalWeight = questionTerms.reduce((sum, t) => sum + idf(t), 0);
  const questionPairs = new Set<string>();
  const qOrdered = terms(question);
  for (let i = 1; i < qOrdered.length; i++) questionPairs.add(`${qOrdered[i - 1]} ${qOrdered[i]}`);

  const maxScore = Math.max(...passages.map((p) => (Number.isFinite(p.score) ? p.score : 0)));

  const candidates: Candidate[] = [];
  sentencesByPassage.forEach((sentences, pi) => {
    const passage = passages[pi]!;
    const normScore = maxScore > 0 && Number.isFinite(passage.score) ? Math.max(0, passage.score) / maxScore : 0;
    const prior = 0.1 * normScore + 0.1 / (pi + 1);
    sentences.forEach((text, si) => {
      const ordered = termsByPassage[pi]![si]!;
      const words = text.split(' ').length;
      // Headings and fragments are not answers.
      if (words < 3 && !/[.!?。！？]$/u.test(text)) return;
      const set = new Set(ordered);
      let matched = 0;
      let matchedCount = 0;
      for (const t of questionTerms) {
        if (set.has(t)) {
          matched += idf(t);
          matchedCount++;
        }
      }
      if (matchedCount === 0) return;
      let pairs = 0;
      for (let i = 1; i < ordered.length; i++) if (questionPairs.has(`${ordered[i - 1]} ${ordered[i]}`)) pairs++;
      const coverage = matched / totalWeight;
      const density = matchedCount / Math.max(1, set.size);
      const lengthPenalty = words > 60 ? 0.1 * Math.min(1, (words - 60) / 60) : 0;
      const score = coverage + 0.1 * density + 0.05 * Math.min(pairs, 3) + prior - lengthPenalty;
      candidates.push({ passage: pi, position: si, text, terms: set, score, words });
    });
  });
  if (candidates.length === 0) return none;

  candidates.sort((a, b) => b.score - a.score || a.passage - b.passage || a.position - b.position);
  const best = candidates[0]!;
  const picked: Candidate[] = [best];
  let words = best.words;
  for (const c of candidates.slice(1)) {
    if (picked.length >= maxSentences) break;
    if (c.score < best.score * minRelative) break;
    if (words + c.words > maxWords) continue;
    const duplicate = picked.some(
      (p) => p.text === c.text || p.text.includes(c.text) || c.text.includes(p.text) || jaccard(p.terms, c.terms) >= 0.7,
    );
    if (duplicate) continue;
    picked.push(c);
    words += c.words;
  }
  picked.sort((a, b) => a.passage - b.passage || a.position - b.position);

  const answer = picked.map((c) => `${c.text} [${c.passage + 1}]`).join(' ');
  const citations = [...new Set(picked.map((c) => c.passage + 1))];
  return { answer, citations };
}

export function createExtractiveAnswerer(opts: ExtractiveAnswererOptions = {}): Answerer {
  const answer = async (req: AnswerRequest): Promise<Answer> => {
    abortIfNeeded(req.signal);
    const result = extractAnswer(req.question, req.passages, opts);
    return { answer: result.answer, mode: 'extractive', model: EXTRACTIVE_MODEL, citations: result.citations, removedCitations: 0 };
  };
  return {
    id: EXTRACTIVE_MODEL,
    answer,
    async stream(req, onToken) {
      const whole = await answer(req);
      // Word tokens that concatenate back to the answer exactly.
      for (const token of whole.answer.match(/\S+\s*/g) ?? []) {
        abortIfNeeded(req.signal);
        onToken(token);
      }
      return whole;
    },
  };
}
