import express from 'express';
import request from 'supertest';
import { ValidationError } from '../core/errors';
import { errorHandler } from './problem';

/** A backing server that does not answer is a 503 with Retry-After; a bug stays a 500. */
describe('problem details for failures', () => {
  const app = (err: unknown) => {
    const a = express();
    a.get('/x', () => {
      throw err;
    });
    a.use(errorHandler(() => undefined));
    return a;
  };
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

  it.each([
    ['PostgreSQL refusing connections', withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')],
    ['PostgreSQL terminating a backend', withCode('terminating connection due to administrator command', '57P01')],
    ['PostgreSQL starting up', withCode('the database system is starting up', '57P03')],
    ['a pooled connection lost mid-query', new Error('Connection terminated unexpectedly')],
    ['the pool unable to connect in time', new Error('timeout exceeded when trying to connect')],
    ['Weaviate loading its shards after a restart', new Error('Query call with protocol gRPC failed with message: /weaviate.v1.Weaviate/Search UNKNOWN: explorer: get class: vector search: object vector search at index chunkx: no read replica found')],
    ['an outage wrapped as the cause', new Error('query failed', { cause: withCode('read ECONNRESET', 'ECONNRESET') })],
  ])('%s: 503 with Retry-After', async (_what, err) => {
    const res = await request(app(err)).get('/x');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 503, title: 'Service unavailable' });
  });

  it('an ordinary failure stays a 500 and says nothing of its cause', async () => {
    const res = await request(app(new TypeError("Cannot read properties of undefined (reading 'rows')"))).get('/x');
    expect(res.status).toBe(500);
    expect(res.headers['retry-after']).toBeUndefined();
    expect(JSON.stringify(res.body)).not.toMatch(/rows/);
  });

  it('typed errors keep their status', async () => {
    expect((await request(app(new ValidationError('query: must be at most 8000 characters'))).get('/x')).status).toBe(400);
  });
});
