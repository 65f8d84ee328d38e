/**
 * Deterministic synthetic data for the benchmarks: a seeded PRNG, random unit vectors, a
 * pseudo-English vocabulary with Zipf-distributed word frequencies (so some query words match
 * many chunks, as in real text), chunk texts, queries, Markdown documents and event payloads.
 */
import { randomUUID } from 'node:crypto';

/** mulberry32: small, fast, good enough for benchmark data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): number {
  let u = 0;
  while (u === 0) u = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** A random direction in `dims` dimensions, L2-normalised. */
export function unitVector(rand: () => number, dims = 384): Float32Array {
  const v = new Float32Array(dims);
  let n = 0;
  for (let i = 0; i < dims; i++) {
    const x = gaussian(rand);
    v[i] = x;
    n += x * x;
  }
  const s = 1 / Math.sqrt(n);
  for (let i = 0; i < dims; i++) v[i] = v[i]! * s;
  return v;
}

const ONSETS = ['b', 'c', 'd', 'f', 'g', 'h', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'w', 'br', 'cl', 'dr', 'gr', 'pl', 'st', 'tr', 'sh', 'ch', 'th'];
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'io', 'ou'];
const CODAS = ['', 'n', 'r', 's', 't', 'l', 'm', 'nd', 'st', 'rk'];

export interface Vocabulary {
  words: string[];
  /** A word drawn with Zipf(s = 1) frequencies: rank 1 is the most frequent. */
  draw(rand: () => number): string;
}

/** `size` distinct pronounceable pseudo-words (2-3 syllables) and a Zipf sampler over them. */
export function vocabulary(size = 20_000, seed = 7): Vocabulary {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const seen = new Set<string>();
  const words: string[] = [];
  while (words.length < size) {
    const syllables = 2 + Math.floor(rand() * 2);
    let w = '';
    for (let s = 0; s < syllables; s++) w += pick(ONSETS) + pick(VOWELS) + (s === syllables - 1 ? pick(CODAS) : '');
    if (!seen.has(w)) {
      seen.add(w);
      words.push(w);
    }
  }
  // Cumulative Zipf weights 1/r.
  const cdf = new Float64Array(size);
  let acc = 0;
  for (let r = 0; r < size; r++) {
    acc += 1 / (r + 1);
    cdf[r] = acc;
  }
  return {
    words,
    draw(rand) {
      const x = rand() * acc;
      let lo = 0;
      let hi = size - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid]! < x) lo = mid + 1;
        else hi = mid;
      }
      return words[lo]!;
    },
  };
}

/** About `words` words of sentence-shaped text (a 256-token chunk is about 150 words). */
export function chunkText(vocab: Vocabulary, rand: () => number, words = 150): string {
  const out: string[] = [];
  let sentence = 0;
  for (let i = 0; i < words; i++) {
    let w = vocab.draw(rand);
    if (sentence === 0) w = w[0]!.toUpperCase() + w.slice(1);
    sentence++;
    if (sentence > 8 + rand() * 12) {
      w += '.';
      sentence = 0;
    }
    out.push(w);
  }
  return `${out.join(' ')}.`;
}

/** A query of 2-4 words drawn from the same distribution as the texts. */
export function queryText(vocab: Vocabulary, rand: () => number): string {
  const n = 2 + Math.floor(rand() * 3);
  return Array.from({ length: n }, () => vocab.draw(rand)).join(' ');
}

/** A Markdown document of exactly `bytes` bytes (ASCII): headings, paragraphs, lists, code. */
export function markdownDocument(bytes: number, seed = 11): string {
  const vocab = vocabulary(20_000, seed);
  const rand = rng(seed);
  const parts: string[] = [];
  let size = 0;
  let section = 0;
  const push = (s: string) => {
    parts.push(s);
    size += s.length;
  };
  while (size < bytes) {
    section++;
    push(`## ${section}. ${chunkText(vocab, rand, 4).replace(/\.$/, '')}\n\n`);
    const paragraphs = 2 + Math.floor(rand() * 4);
    for (let p = 0; p < paragraphs && size < bytes; p++) {
      if (rand() < 0.15) {
        push(`${Array.from({ length: 3 + Math.floor(rand() * 4) }, () => `- ${chunkText(vocab, rand, 8)}`).join('\n')}\n\n`);
      } else if (rand() < 0.08) {
        push(`\`\`\`ts\nconst ${vocab.draw(rand)} = ${Math.floor(rand() * 1000)};\nexport function ${vocab.draw(rand)}() { return ${vocab.draw(rand)}; }\n\`\`\`\n\n`);
      } else {
        push(`${chunkText(vocab, rand, 40 + Math.floor(rand() * 80))}\n\n`);
      }
    }
  }
  let doc = `# Benchmark handbook\n\n${parts.join('')}`;
  if (doc.length > bytes) doc = doc.slice(0, bytes - 1) + '\n';
  return doc;
}

/** Metadata of an event, as the command handler writes it. */
export function eventMetadata(tenantId: string, actor = 'user:00000000-0000-4000-8000-000000000001') {
  return { tenantId, actor, correlationId: randomUUID(), causationId: null, schemaVersion: 1, occurredAt: new Date().toISOString() };
}

/** A DocumentUploaded-shaped payload (about 300 bytes of JSON), as the product appends them. */
export function documentUploadedData(documentId: string, version = 1, sizeBytes = 12_345) {
  return {
    documentId,
    filename: `handbook-${documentId.slice(0, 8)}.md`,
    externalId: null,
    contentType: 'text/markdown',
    sizeBytes,
    sha256: 'a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90',
    version,
    uploadedBy: 'user:00000000-0000-4000-8000-000000000001',
  };
}
