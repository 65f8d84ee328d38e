/**
 * Shared statistics and reporting for `npm run bench` (bench/run.ts).
 *
 * Every figure is measured in several runs. How a figure is summarised depends on its kind:
 *   - latency: the samples of all runs are pooled; `median` is their p50 and `p99` their p99
 *     (nearest rank, bench/metrics.ts). `spread` is the range of the per-run p50s.
 *   - rate (events/s, requests/s): one value per run; `median` is the median run and `p99` the
 *     rate that 99% of runs reach (the 1st percentile, i.e. the worst run for a handful of runs).
 *   - value (seconds, MiB, ratios): one value per run; `median` and `p99` of the values (for a
 *     "lower is better" value p99 is the high tail).
 * Verdicts: a latency target names the percentile it bounds; a rate or value target is checked
 * against the median run (the worst run is printed next to it).
 */
import { percentile } from './metrics';

export type Kind = 'latency' | 'rate' | 'value';
export type Verdict = 'PASS' | 'MISS' | 'INFO' | 'SKIP' | 'ERROR';

export interface Summary {
  kind: Kind;
  unit: string;
  runs: number;
  samples: number;
  median: number;
  p99: number;
  spread: [number, number] | null;
}

export interface Figure {
  id: string;
  group: string;
  label: string;
  /** What was measured, e.g. "10,000 chunks (--quick; full run: 100,000)". */
  scale: string;
  summary: Summary | null;
  target: string;
  verdict: Verdict;
  /** Peer or physical limit measured in the same run, e.g. "0.82 x limit (31,250 events/s)". */
  compare: string;
  notes: string[];
  /** Raw per-run values or latency samples (ms), for the JSON report. */
  raw?: unknown;
}

/** Nearest-rank percentile (bench/metrics.ts); NaN for no values. */
export const pct = (values: readonly number[], p: number): number => percentile(values, p);
export const median = (values: readonly number[]): number => percentile(values, 50);

export function summariseLatency(runs: readonly (readonly number[])[], unit = 'ms'): Summary {
  const all = runs.flat();
  const perRun = runs.filter((r) => r.length > 0).map((r) => pct(r, 50));
  return {
    kind: 'latency',
    unit,
    runs: runs.length,
    samples: all.length,
    median: pct(all, 50),
    p99: pct(all, 99),
    spread: perRun.length ? [Math.min(...perRun), Math.max(...perRun)] : null,
  };
}

export function summariseRate(values: readonly number[], unit: string): Summary {
  return {
    kind: 'rate',
    unit,
    runs: values.length,
    samples: values.length,
    median: median(values),
    p99: pct(values, 1),
    spread: values.length ? [Math.min(...values), Math.max(...values)] : null,
  };
}

export function summariseValue(values: readonly number[], unit: string): Summary {
  return {
    kind: 'value',
    unit,
    runs: values.length,
    samples: values.length,
    median: median(values),
    p99: pct(values, 99),
    spread: values.length ? [Math.min(...values), Math.max(...values)] : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function fmtNum(v: number, digits?: number): string {
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  const d = digits ?? (a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
  return v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

export function fmtValue(v: number, unit: string): string {
  if (!Number.isFinite(v)) return '-';
  return `${fmtNum(v)} ${unit}`;
}

export const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

export function skipped(base: Omit<Figure, 'summary' | 'verdict' | 'compare' | 'notes'> & { reason: string; compare?: string }): Figure {
  return { ...base, summary: null, verdict: 'SKIP', compare: base.compare ?? '', notes: [base.reason] };
}

export function failed(base: Omit<Figure, 'summary' | 'verdict' | 'compare' | 'notes'>, err: unknown): Figure {
  const msg = err instanceof Error ? err.message : String(err);
  return { ...base, summary: null, verdict: 'ERROR', compare: '', notes: [`failed: ${msg.split('\n')[0]!.slice(0, 300)}`] };
}

/** Verdict for "at least min" (rates): checked on the median run. */
export function atLeast(s: Summary, min: number): Verdict {
  return s.median >= min ? 'PASS' : 'MISS';
}

/** Verdict for latency bounds on p50 and/or p99 of the pooled samples. */
export function latencyWithin(s: Summary, bounds: { p50?: number; p99?: number }): Verdict {
  const ok = (bounds.p50 === undefined || s.median <= bounds.p50) && (bounds.p99 === undefined || s.p99 <= bounds.p99);
  return ok ? 'PASS' : 'MISS';
}

export function all(...verdicts: Verdict[]): Verdict {
  if (verdicts.includes('ERROR')) return 'ERROR';
  if (verdicts.includes('MISS')) return 'MISS';
  if (verdicts.every((v) => v === 'SKIP')) return 'SKIP';
  return verdicts.includes('PASS') ? 'PASS' : 'INFO';
}

// ---------------------------------------------------------------------------------------------
// Table

interface Column {
  title: string;
  get(f: Figure): string;
  max?: number;
}

const COLUMNS: Column[] = [
  { title: 'figure', get: (f) => f.label, max: 58 },
  { title: 'scale', get: (f) => f.scale, max: 40 },
  { title: 'median', get: (f) => (f.summary ? fmtValue(f.summary.median, f.summary.unit) : '-') },
  { title: 'p99', get: (f) => (f.summary ? fmtValue(f.summary.p99, f.summary.unit) : '-') },
  { title: 'runs', get: (f) => (f.summary ? (f.summary.kind === 'latency' ? `${f.summary.runs}x (${fmtInt(f.summary.samples)})` : `${f.summary.runs}`) : '-') },
  { title: 'target', get: (f) => f.target, max: 36 },
  { title: 'verdict', get: (f) => f.verdict },
  { title: 'vs peer / limit (same run)', get: (f) => f.compare || '-', max: 64 },
];

function wrap(text: string, width: number): string[] {
  if (text.length <= width) return [text];
  const words = text.split(' ');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else {
      line = line ? `${line} ${w}` : w;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** Plain-text table (one row per figure, long cells wrapped) followed by numbered notes. */
export function renderTable(figures: Figure[], header: string[]): string {
  const cells = figures.map((f) => COLUMNS.map((c) => wrap(c.get(f), c.max ?? 1000)));
  const widths = COLUMNS.map((c, i) => Math.max(c.title.length, ...cells.map((row) => Math.max(...row[i]!.map((l) => l.length)))));
  const sep = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  const out: string[] = [...header, sep, line(COLUMNS.map((c) => c.title)), sep.replace(/-/g, '=')];
  let group = '';
  figures.forEach((f, k) => {
    if (f.group !== group && k > 0) out.push(sep);
    group = f.group;
    const row = cells[k]!;
    const height = Math.max(...row.map((c) => c.length));
    for (let h = 0; h < height; h++) out.push(line(row.map((c) => c[h] ?? '')));
  });
  out.push(sep);
  const notes: string[] = [];
  figures.forEach((f) => {
    if (f.notes.length === 0) return;
    notes.push(`- ${f.label}:`);
    for (const n of f.notes) notes.push(...wrap(n, 110).map((l, i) => (i === 0 ? `    * ${l}` : `      ${l}`)));
  });
  if (notes.length) out.push('', 'Notes', ...notes);
  return out.join('\n');
}
