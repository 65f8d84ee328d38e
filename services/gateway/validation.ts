import type { z } from 'zod';
import { NotFoundError, ValidationError } from '../core/errors';

export function parseBody<S extends z.ZodTypeAny>(schema: S, body: unknown): z.infer<S> {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ValidationError('The request body must be a JSON object (Content-Type: application/json)');
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const errors = r.error.issues.map((i) => ({ path: i.path.join('.') || '(body)', message: i.message }));
    throw new ValidationError(errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors);
  }
  return r.data;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A malformed id answers exactly like a missing one (no oracle on the id's shape). */
export function idParam(value: unknown, what: string): string {
  if (typeof value !== 'string' || !UUID.test(value)) throw new NotFoundError(what);
  return value.toLowerCase();
}

/** Text without NUL or other C0 control characters (tab and newlines allowed). */
export function hasControlChars(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s);
}

/** Names (filenames, ids) allow no control character at all: C0, DEL, C1, line separators, or
 *  bidirectional overrides (which make `a\u202egpj.md` display as `adm.jpg`). */
export function hasAnyControlChars(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(s);
}

/** Finds a NUL character anywhere in a parsed JSON body (PostgreSQL text cannot hold it). */
export function containsNul(v: unknown, depth = 0): boolean {
  if (typeof v === 'string') return v.includes('\u0000');
  if (depth > 64 || v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.some((x) => containsNul(x, depth + 1));
  return Object.entries(v as Record<string, unknown>).some(([k, x]) => k.includes('\u0000') || containsNul(x, depth + 1));
}

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$/;

export interface Cursor {
  at: string;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.at, c.id])).toString('base64url');
}

export function decodeCursor(raw: unknown): Cursor | null {
  if (raw === undefined || raw === '') return null;
  if (typeof raw !== 'string' || raw.length > 200) throw new ValidationError('cursor is not valid');
  try {
    const v = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' && ISO_INSTANT.test(v[0]) && new Date(v[0]).toISOString().slice(0, 19) === v[0].slice(0, 19) && UUID.test(v[1])) {
      return { at: v[0], id: v[1] };
    }
  } catch {
    // fall through
  }
  throw new ValidationError('cursor is not valid');
}

export function limitParam(raw: unknown, def = 20, max = 100): number {
  if (raw === undefined) return def;
  const n = typeof raw === 'string' && /^\d{1,6}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > max) throw new ValidationError(`limit must be an integer from 1 to ${max}`);
  return n;
}
