/**
 * Freshness: from "command accepted" (the 202 of POST /v1/documents) to "visible to search" (the
 * first POST /v1/search response that contains the new document), through the public API.
 * Each sample uploads a small Markdown document carrying a word no other document has, then
 * searches for that word back to back until the document shows up (bounded: 10 s).
 */
import { chunkText, rng, vocabulary } from './data';
import type { Bench, BenchTenant, HttpClient } from './harness';
import { type Figure, fmtNum, latencyWithin, median, pct, summariseLatency } from './stats';

export interface FreshnessResult {
  runs: number[][];
  /** Request sent -> visible (includes the upload itself). */
  endToEnd: number[];
  uploadMs: number[];
  polls: number[];
  /** Latency of the polling searches (the resolution of the measurement). */
  pollMs: number[];
  timeouts: number;
}

export async function measureFreshness(http: HttpClient, tenant: BenchTenant, runs: number, perRun: number, tag: string): Promise<FreshnessResult> {
  const vocab = vocabulary(20_000, 7);
  const rand = rng(5);
  const out: FreshnessResult = { runs: [], endToEnd: [], uploadMs: [], polls: [], pollMs: [], timeouts: 0 };
  let n = 0;
  for (let r = 0; r < runs; r++) {
    const samples: number[] = [];
    for (let i = 0; i < perRun; i++) {
      const word = `fresh${tag}${++n}q${Math.floor(rand() * 1e9).toString(36)}`;
      const text = `# Note ${n}\n\n${word} ${chunkText(vocab, rand, 60)}\n`;
      const sent = performance.now();
      const up = await http.expect<{ id: string }>(202, 'POST', '/v1/documents', { token: tenant.token, json: { filename: `fresh-${tag}-${n}.md`, text } });
      const accepted = performance.now();
      out.uploadMs.push(up.ms);
      let polls = 0;
      for (;;) {
        polls++;
        const s = await http.request<{ results: { document_id: string }[] }>('POST', '/v1/search', { token: tenant.token, json: { query: word, top_k: 3 } });
        if (s.status !== 200) throw new Error(`search: HTTP ${s.status}`);
        out.pollMs.push(s.ms);
        const now = performance.now();
        if (s.body.results.some((h) => h.document_id === up.body.id)) {
          samples.push(now - accepted);
          out.endToEnd.push(now - sent);
          break;
        }
        if (now - accepted > 10_000) {
          out.timeouts++;
          samples.push(now - accepted);
          break;
        }
      }
      out.polls.push(polls);
    }
    out.runs.push(samples);
  }
  return out;
}

export function freshnessFigure(b: Bench, f: FreshnessResult, profile: string, bounds: { p50?: number; p99?: number }, target: string, id = 'freshness'): Figure {
  const s = summariseLatency(f.runs);
  const per = f.runs[0]?.length ?? 0;
  return {
    id,
    group: 'freshness',
    label: `freshness: upload accepted (202) -> visible to search, ${profile}`,
    scale: `${f.runs.length} runs x ${per} uploads${b.opts.quick ? ' (--quick)' : ''}`,
    summary: s,
    target,
    verdict: f.timeouts ? 'MISS' : latencyWithin(s, bounds),
    compare: `incl. the upload request: p50 ${fmtNum(median(f.endToEnd))} / p99 ${fmtNum(pct(f.endToEnd, 99))} ms`,
    notes: [
      `Upload (POST /v1/documents, waits for the catalog projection) p50 ${fmtNum(median(f.uploadMs))} ms; searches until visible: median ${median(f.polls)}, max ${Math.max(...f.polls)}, each p50 ${fmtNum(median(f.pollMs))} ms (the resolution of this measurement).${f.timeouts ? ` ${f.timeouts} uploads never became visible within 10 s.` : ''}`,
    ],
    raw: f,
  };
}
