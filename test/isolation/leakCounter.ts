/**
 * Counts attacks and leaks for the isolation suites.
 *
 * Every attack is one HTTP request sent on behalf of an actor (a tenant's name, or null for an
 * outsider with no valid credentials). Its answer is checked for:
 *   - the expected status (a 5xx is always a failure: nothing may crash);
 *   - the media type: every 4xx/5xx is `application/problem+json` with a matching `status`
 *     member; a 2xx is JSON (or what the attack declares, e.g. text/event-stream); 204 is empty;
 *   - leaks: the body and headers must hold none of the OTHER tenants' marker strings (for an
 *     outsider: nobody's markers). Markers the attacker itself sent can be allowed per attack.
 *
 * `assertClean()` throws with every failure recorded since its previous call, so each test ends
 * with one readable list; `print()` logs the per-route table (attacks, leaks, failures).
 */
import type { Response } from 'supertest';

export interface AttackSpec {
  /** Route template, e.g. `GET /v1/documents/{id}`: the unit the table counts by. */
  route: string;
  /** Short description of the attack (shown in failures). */
  attack: string;
  /** Tenant on whose behalf the request is sent; null = outsider (no tenant's data may show). */
  as: string | null;
  /** Acceptable statuses. 5xx is never acceptable, whatever is listed. */
  expect: number | readonly number[];
  /** Media type a 2xx answer must have (default: JSON; 204 must be empty). */
  successType?: RegExp;
  /** Foreign markers the attacker itself put in the request (echoing them back is no leak). */
  allow?: readonly string[];
  /** Sends the request. */
  send: () => PromiseLike<Response>;
}

export interface AttackOutcome {
  route: string;
  attack: string;
  as: string | null;
  status: number;
  expected: readonly number[];
  statusOk: boolean;
  typeOk: boolean;
  typeProblem: string | null;
  leaked: string[];
  /** Time to the complete answer. */
  ms: number;
}

export interface RouteRow {
  route: string;
  attacks: number;
  leaks: number;
  wrongStatus: number;
  notProblemJson: number;
  serverErrors: number;
  /** Slowest answer, in milliseconds. */
  maxMs: number;
}

export class LeakCounter {
  private readonly markers = new Map<string, Set<string>>();
  readonly outcomes: AttackOutcome[] = [];
  private reported = 0;

  constructor(readonly title: string) {}

  /** Registers (or extends) a tenant's secret marker strings. */
  addMarkers(tenant: string, ...markers: string[]): void {
    const set = this.markers.get(tenant) ?? new Set<string>();
    for (const m of markers) {
      if (m.length < 6) throw new Error(`marker too short to be unique: ${m}`);
      set.add(m);
    }
    this.markers.set(tenant, set);
  }

  markersOf(tenant: string): string[] {
    return [...(this.markers.get(tenant) ?? [])];
  }

  /** Markers the actor must never see: every other tenant's (an outsider's: everyone's). */
  foreignMarkers(actor: string | null): string[] {
    const out: string[] = [];
    for (const [tenant, set] of this.markers) if (tenant !== actor) out.push(...set);
    return out;
  }

  /** Foreign markers found in a text (case-insensitive). */
  leaksIn(actor: string | null, text: string, allow: readonly string[] = []): string[] {
    const hay = text.toLowerCase();
    return this.foreignMarkers(actor).filter((m) => !allow.includes(m) && hay.includes(m.toLowerCase()));
  }

  async attack(spec: AttackSpec): Promise<Response> {
    const expected = typeof spec.expect === 'number' ? [spec.expect] : [...spec.expect];
    let res: Response;
    const started = Date.now();
    try {
      res = await spec.send();
    } catch (err) {
      // A dropped connection or a client-side failure: counted as a crash.
      this.outcomes.push({
        route: spec.route,
        attack: spec.attack,
        as: spec.as,
        status: 0,
        expected,
        statusOk: false,
        typeOk: false,
        typeProblem: `request failed: ${(err as Error).message}`,
        leaked: [],
        ms: Date.now() - started,
      });
      throw err;
    }
    const ms = Date.now() - started;
    const status = res.status;
    const statusOk = status < 500 && expected.includes(status);
    const type = String(res.headers['content-type'] ?? '');
    const text = bodyText(res);
    let typeProblem: string | null = null;
    if (status >= 400) {
      if (!/^application\/problem\+json\b/.test(type)) typeProblem = `content-type ${type || '(none)'} is not application/problem+json`;
      else if (!res.body || res.body.status !== status || typeof res.body.title !== 'string' || typeof res.body.detail !== 'string') {
        typeProblem = `problem body does not match RFC 7807 (status ${String(res.body?.status)})`;
      }
    } else if (status === 204) {
      if (text.length > 0) typeProblem = '204 with a body';
    } else if (!(spec.successType ?? /^application\/json\b/).test(type)) {
      typeProblem = `content-type ${type || '(none)'} for a ${status}`;
    }
    const headerText = Object.entries(res.headers)
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`)
      .join('\n');
    const leaked = this.leaksIn(spec.as, `${headerText}\n${text}`, spec.allow);
    this.outcomes.push({ route: spec.route, attack: spec.attack, as: spec.as, status, expected, statusOk, typeOk: typeProblem === null, typeProblem, leaked, ms });
    return res;
  }

  /** Runs attacks with bounded concurrency; resolves to the responses in order. */
  async all(specs: AttackSpec[], concurrency = 16): Promise<Response[]> {
    const out: Response[] = new Array(specs.length);
    let next = 0;
    const worker = async () => {
      while (next < specs.length) {
        const i = next++;
        out[i] = await this.attack(specs[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, specs.length) }, worker));
    return out;
  }

  failures(from = 0): AttackOutcome[] {
    return this.outcomes.slice(from).filter((o) => !o.statusOk || !o.typeOk || o.leaked.length > 0);
  }

  /** Throws with every failure since the previous call (each test ends with this). */
  assertClean(): void {
    const from = this.reported;
    this.reported = this.outcomes.length;
    const failed = this.failures(from);
    if (failed.length === 0) return;
    const lines = failed.map((o) => {
      const why = [
        !o.statusOk ? `status ${o.status}, expected ${o.expected.join('|')}` : null,
        o.typeProblem,
        o.leaked.length ? `LEAKED ${o.leaked.join(', ')}` : null,
      ].filter(Boolean);
      return `  ${o.route} [${o.as ?? 'outsider'}] ${o.attack}: ${why.join('; ')}`;
    });
    throw new Error(`${failed.length} of ${this.outcomes.length - from} attacks failed:\n${lines.join('\n')}`);
  }

  totalLeaks(): number {
    return this.outcomes.filter((o) => o.leaked.length > 0).length;
  }

  table(): RouteRow[] {
    const rows = new Map<string, RouteRow>();
    for (const o of this.outcomes) {
      const row = rows.get(o.route) ?? { route: o.route, attacks: 0, leaks: 0, wrongStatus: 0, notProblemJson: 0, serverErrors: 0, maxMs: 0 };
      row.attacks++;
      if (o.leaked.length) row.leaks++;
      if (!o.statusOk) row.wrongStatus++;
      if (!o.typeOk) row.notProblemJson++;
      if (o.status >= 500 || o.status === 0) row.serverErrors++;
      row.maxMs = Math.max(row.maxMs, o.ms);
      rows.set(o.route, row);
    }
    return [...rows.values()].sort((a, b) => a.route.localeCompare(b.route));
  }

  /** The per-route table, as printed at the end of a suite. */
  format(): string {
    const rows = this.table();
    const head = ['route', 'attacks', 'leaks', 'wrong status', 'bad type', '5xx', 'slowest ms'];
    const body = rows.map((r) => [r.route, String(r.attacks), String(r.leaks), String(r.wrongStatus), String(r.notProblemJson), String(r.serverErrors), String(r.maxMs)]);
    const total = rows.reduce(
      (t, r) => ({ a: t.a + r.attacks, l: t.l + r.leaks, w: t.w + r.wrongStatus, n: t.n + r.notProblemJson, s: t.s + r.serverErrors }),
      { a: 0, l: 0, w: 0, n: 0, s: 0 },
    );
    body.push(['TOTAL', String(total.a), String(total.l), String(total.w), String(total.n), String(total.s), String(Math.max(0, ...rows.map((r) => r.maxMs)))]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    return [`${this.title}: attacks per route (leaks must be 0)`, line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
  }

  print(): void {
    console.log(this.format());
  }
}

/** The raw text of an answer (JSON, problem+json, SSE or text), for leak checks. */
export function bodyText(res: Response): string {
  if (typeof res.text === 'string') return res.text;
  if (Buffer.isBuffer(res.body)) return res.body.toString('utf8');
  return res.body === undefined ? '' : JSON.stringify(res.body);
}
