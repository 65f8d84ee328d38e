import busboy from 'busboy';
import type { Request } from 'express';
import express, { Router } from 'express';
import { v5 as uuidv5 } from 'uuid';
import { z } from 'zod';
import { streamId } from '../../contracts/naming';
import { withTenant } from '../../infra/postgres/schema';
import { handle } from '../core/commandHandler';
import { AppError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from '../core/errors';
import { requireRole } from '../gateway/auth';
import { type AppDeps, commandContext, principalOf, waitForProjections } from '../gateway/context';
import { containsNul, decodeCursor, encodeCursor, hasAnyControlChars, idParam, limitParam, parseBody } from '../gateway/validation';
import { sniffFormat } from './parsing';
import { decide } from './decide';
import { documentAggregate } from './document';

const MEDIA_TYPES: Record<string, string> = {
  text: 'text/plain',
  markdown: 'text/markdown',
  html: 'text/html',
  pdf: 'application/pdf',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
};

interface Upload {
  filename: string;
  externalId: string | null;
  bytes: Buffer;
  contentType: string;
}

/** A filename is a display name, never a path: no separators, no control characters, no dot-names. */
export function checkFilename(name: string): string {
  const n = name.normalize('NFC').trim();
  if (!n || n.length > 255 || n === '.' || n === '..' || /[/\\]/.test(n) || hasAnyControlChars(n)) {
    throw new ValidationError('filename must be 1-255 characters with no path separators or control characters');
  }
  return n;
}

const jsonUpload = z
  .object({
    filename: z.string().min(1).max(255),
    text: z.string().min(1, 'the document is empty'),
    external_id: z.string().min(1).max(200).optional(),
    content_type: z.string().max(100).optional(),
  })
  .strict();

function readMultipart(req: Request, maxBytes: number): Promise<Upload> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      // busboy flags a file that reaches fileSize: allow exactly maxBytes, refuse one byte more.
      bb = busboy({ headers: req.headers, limits: { fileSize: maxBytes + 1, files: 1, fields: 5, fieldSize: 1024, parts: 8 } });
    } catch {
      reject(new ValidationError('malformed multipart request'));
      return;
    }
    let file: Upload | null = null;
    let externalId: string | null = null;
    let failure: Error | null = null;
    let pending: Promise<void> = Promise.resolve();
    bb.on('field', (name, value) => {
      if (name === 'external_id') externalId = value;
    });
    bb.on('file', (name, stream, info) => {
      if (name !== 'file') {
        stream.resume();
        failure ??= new ValidationError('the file must be sent in the multipart field "file"');
        return;
      }
      const parts: Buffer[] = [];
      // A truncated body destroys the file stream with an error: answer 400, never crash.
      stream.on('error', () => {
        failure ??= new ValidationError('malformed multipart request');
      });
      pending = new Promise((done) => {
        stream.on('close', () => done());
        stream.on('data', (d: Buffer) => parts.push(d));
        stream.on('limit', () => {
          failure ??= new PayloadTooLargeError(`documents are limited to ${maxBytes} bytes`);
        });
        stream.on('end', () => {
          file = { filename: info.filename ?? '', externalId: null, bytes: Buffer.concat(parts), contentType: info.mimeType || 'application/octet-stream' };
          done();
        });
      });
    });
    bb.on('error', () => reject(new ValidationError('malformed multipart request')));
    bb.on('close', () => {
      pending.then(() => {
        if (failure) return reject(failure);
        if (!file) return reject(new ValidationError('no file in the multipart field "file"'));
        resolve({ ...(file as Upload), externalId });
      }, reject);
    });
    req.pipe(bb);
  });
}

async function readUpload(req: Request, maxBytes: number): Promise<Upload> {
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('multipart/form-data')) return readMultipart(req, maxBytes);
  if (req.is('application/json')) {
    if (containsNul(req.body)) throw new ValidationError('NUL characters are not allowed in requests');
    const body = parseBody(jsonUpload, req.body);
    const bytes = Buffer.from(body.text, 'utf8');
    return { filename: body.filename, externalId: body.external_id ?? null, bytes, contentType: body.content_type ?? 'text/plain' };
  }
  throw new UnsupportedMediaTypeError('send multipart/form-data with a "file" field, or application/json with filename and text');
}

export function documentView(row: Record<string, unknown>) {
  const ready = row.ready_version !== null && row.ready_version !== undefined;
  const current = row.index_version === row.version;
  const status = current ? (row.index_status as string) : 'pending';
  return {
    id: row.document_id,
    filename: row.filename,
    external_id: row.external_id,
    content_type: row.content_type,
    size_bytes: row.size_bytes,
    sha256: row.sha256,
    version: row.version,
    status,
    error: current && status === 'failed' ? row.error : null,
    chunk_count: status === 'ready' ? row.chunks_total : 0,
    chunks_done: current ? row.chunks_done : 0,
    chunks_total: current ? row.chunks_total : 0,
    /** An older version stays searchable while a replacement is indexed. */
    searchable: ready,
    format: row.format ?? null,
    uploaded_by: row.uploaded_by,
    created_at: row.created_at,
    updated_at: row.updated_at,
    position: row.position,
  };
}

const DOC_SELECT = `SELECT d.*, di.version AS index_version, di.ready_version, di.status AS index_status, di.error, di.chunks_total, di.chunks_done, di.format
  FROM documents d LEFT JOIN document_index di ON di.document_id = d.document_id`;

export function documentsApi(deps: AppDeps): Router {
  const r = Router();

  // Large JSON bodies are parsed only after authentication and the role check.
  r.post('/v1/documents', requireRole('member'), express.json({ limit: '16mb', strict: true }), async (req, res) => {
    const p = principalOf(req);
    const upload = await readUpload(req, deps.config.maxUploadBytes);
    const filename = checkFilename(upload.filename);
    if (upload.externalId !== null && (upload.externalId.length === 0 || upload.externalId.length > 200 || hasAnyControlChars(upload.externalId))) {
      throw new ValidationError('external_id must be 1-200 characters without control characters');
    }
    if (upload.bytes.length === 0) throw new ValidationError('the document is empty');
    if (upload.bytes.length > deps.config.maxUploadBytes) throw new PayloadTooLargeError(`documents are limited to ${deps.config.maxUploadBytes} bytes`);
    // Throws DocumentParseError (415/422) for what we cannot read, before anything is stored.
    const format = sniffFormat(filename, upload.bytes, upload.contentType);
    // JSON uploads carry no media type of their own: name the one the content was detected as.
    if (!upload.contentType || upload.contentType === 'application/octet-stream' || req.is('application/json')) upload.contentType = MEDIA_TYPES[format] ?? 'text/plain';

    // Quotas are checked against the catalog read model (eventually consistent by design).
    const quota = await deps.pool.query<{ quotas: { maxDocuments: number; maxBytes: number } }>('SELECT quotas FROM platform.tenants WHERE tenant_id = $1', [p.tenantId]);
    const limits = quota.rows[0]?.quotas ?? deps.config.defaultQuotas;
    const used = await withTenant(deps.pool, p.tenantId, async (c) => (await c.query<{ n: string; bytes: string | null }>('SELECT count(*) AS n, sum(size_bytes) AS bytes FROM documents')).rows[0]!, { readOnly: true });
    if (Number(used.n) >= limits.maxDocuments || Number(used.bytes ?? 0) + upload.bytes.length > limits.maxBytes) {
      throw new AppError(403, 'Quota exceeded', `this tenant may hold ${limits.maxDocuments} documents and ${limits.maxBytes} bytes`);
    }

    // The same key (external id, else filename) always names the same document: re-uploading replaces.
    const documentId = uuidv5(upload.externalId !== null ? `external:${upload.externalId}` : `file:${filename}`, p.tenantId);
    const sha256 = await deps.content.put(p.tenantId, upload.bytes);
    const result = await handle(deps.store, streamId('document', p.tenantId, documentId), documentAggregate, commandContext(req, deps), (s) =>
      decide(
        {
          type: 'UploadDocument',
          data: { documentId, filename, externalId: upload.externalId, contentType: upload.contentType, sizeBytes: upload.bytes.length, sha256, uploadedBy: p.actor },
        },
        s,
      ),
    );
    await waitForProjections(deps, result.position, ['catalog'], p.tenantId);
    const unchanged = result.events.length === 0;
    res.status(unchanged ? 200 : 202).location(`/v1/documents/${documentId}`).json({
      id: documentId,
      filename,
      version: result.state.status === 'active' ? result.state.version : null,
      status: unchanged ? 'unchanged' : 'pending',
      position: result.position,
    });
  });

  r.get('/v1/documents', requireRole('viewer'), async (req, res) => {
    const p = principalOf(req);
    const limit = limitParam(req.query.limit);
    const cursor = decodeCursor(req.query.cursor);
    const rows = await withTenant(
      deps.pool,
      p.tenantId,
      async (c) =>
        (
          await c.query(
            `${DOC_SELECT} WHERE ($1::timestamptz IS NULL OR (d.created_at, d.document_id) < ($1::timestamptz, $2::uuid))
             ORDER BY d.created_at DESC, d.document_id DESC LIMIT $3`,
            [cursor?.at ?? null, cursor?.id ?? null, limit + 1],
          )
        ).rows,
      { readOnly: true },
    );
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    res.json({
      items: page.map(documentView),
      next_cursor: rows.length > limit && last ? encodeCursor({ at: (last.created_at as Date).toISOString(), id: last.document_id as string }) : null,
    });
  });

  r.get('/v1/documents/:id', requireRole('viewer'), async (req, res) => {
    const p = principalOf(req);
    const id = idParam(req.params.id, 'Document');
    const row = await withTenant(deps.pool, p.tenantId, async (c) => (await c.query(`${DOC_SELECT} WHERE d.document_id = $1`, [id])).rows[0], { readOnly: true });
    if (!row) throw new NotFoundError('Document');
    res.json(documentView(row));
  });

  r.delete('/v1/documents/:id', requireRole('member'), async (req, res) => {
    const p = principalOf(req);
    const id = idParam(req.params.id, 'Document');
    const result = await handle(deps.store, streamId('document', p.tenantId, id), documentAggregate, commandContext(req, deps), (s) =>
      decide({ type: 'DeleteDocument', data: { documentId: id, actor: p.actor, role: p.role } }, s),
    );
    await waitForProjections(deps, result.position, ['catalog'], p.tenantId);
    res.status(204).end();
  });

  return r;
}
