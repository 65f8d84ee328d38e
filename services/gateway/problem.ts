import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, isDependencyOutage, TooManyRequestsError } from '../core/errors';

/** RFC 7807 problem details. `type` URIs name the error kind; `instance` the request path. */
export function problemBody(status: number, title: string, detail: string, instance: string, extra: Record<string, unknown> = {}) {
  return {
    type: `https://tenant-rag.dev/problems/${title.toLowerCase().replace(/[^a-z]+/g, '-')}`,
    title,
    status,
    detail,
    instance,
    ...extra,
  };
}

export const notFoundRoute: RequestHandler = (req, res) => {
  res.status(404).type('application/problem+json').json(problemBody(404, 'Not found', `no route for ${req.method} ${req.path}`, req.path));
};

/** Maps body-parser and other library errors (which carry status/type) and our typed errors. */
export function errorHandler(log: (err: unknown, req: Parameters<ErrorRequestHandler>[1]) => void): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let status = 500;
    let title = 'Internal server error';
    let detail = 'The server failed to handle this request';
    let extra: Record<string, unknown> = {};
    if (err instanceof AppError) {
      status = err.status;
      title = err.title;
      detail = err.message;
      extra = err.extra;
      if (err instanceof TooManyRequestsError) res.setHeader('Retry-After', String(err.retryAfterSeconds));
    } else if (err && typeof err === 'object' && typeof (err as { status?: unknown }).status === 'number' && (err as { status: number }).status >= 400 && (err as { status: number }).status < 500) {
      // http-errors from body-parser (malformed JSON, too large, bad charset) and the router
      // (undecodable path parameters): client errors, with our own wording where not exposed.
      const e = err as { status: number; type?: string; message: string; expose?: boolean };
      status = e.status;
      title = status === 413 ? 'Payload too large' : status === 415 ? 'Unsupported media type' : 'Invalid request';
      detail = e.type === 'entity.parse.failed' ? 'The request body is not valid JSON' : e.expose ? e.message : 'The request URL or body is malformed';
    } else if (err instanceof URIError) {
      status = 400;
      title = 'Invalid request';
      detail = 'The request URL is not valid percent-encoding';
    } else if (err instanceof RangeError) {
      // e.g. JSON nested beyond the parser's stack
      status = 400;
      title = 'Invalid request';
      detail = 'The request body is too deeply nested';
    } else if (isDependencyOutage(err)) {
      // Logged like any failure, but answered as what it is: retry shortly.
      log(err, req);
      status = 503;
      title = 'Service unavailable';
      detail = 'A backing service (database, vector index, cache or broker) is not answering; retry shortly';
      res.setHeader('Retry-After', '2');
    } else {
      log(err, req);
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).type('application/problem+json').json(problemBody(status, title, detail, req.originalUrl.split('?')[0] ?? req.path, extra));
  };
}
