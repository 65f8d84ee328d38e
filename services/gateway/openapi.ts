/** The OpenAPI 3.1 document served at /openapi.json (and browsable at /docs). */
const problem = { $ref: '#/components/responses/Problem' };
const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [String(c), problem]));
const jsonBody = (schema: object) => ({ required: true, content: { 'application/json': { schema } } });
const ok = (description: string, schema: object = { type: 'object' }) => ({ description, content: { 'application/json': { schema } } });
const idParam = (name: string) => ({ name, in: 'path', required: true, schema: { type: 'string', format: 'uuid' } });
const bearer = [{ bearer: [] }];
const operator = [{ operator: [] }];

const queryText = {
  type: 'string',
  minLength: 1,
  maxLength: 8000,
  description: 'up to 8,000 characters (longer: 400 with the limit in `detail`); the embedding reads its first 256 tokens, keyword search all of it',
};
const searchProps = {
  top_k: { type: 'integer', minimum: 1, maximum: 50, default: 5 },
  document_id: { type: 'string', format: 'uuid', description: 'restrict to one document' },
  mode: { type: 'string', enum: ['hybrid', 'keyword', 'semantic'], default: 'hybrid' },
  min_position: { type: 'string', description: 'wait (bounded) until the read models reflect this event position (read your writes)' },
  as_of: { type: 'string', description: 'search a point-in-time snapshot of the tenant\'s documents (see POST /v1/admin/snapshots)' },
};
const dateRange = [
  { name: 'from', in: 'query', schema: { type: 'string', format: 'date' }, description: 'first day (default: 29 days before `to`)' },
  { name: 'to', in: 'query', schema: { type: 'string', format: 'date' }, description: 'last day (default: today, UTC)' },
];
const auditFilters = [
  { name: 'actor', in: 'query', schema: { type: 'string' }, description: '`user:<id>`, `token:<id>`, `operator`, `anonymous`, `system:indexer`' },
  { name: 'type', in: 'query', schema: { type: 'string' }, description: 'event type, e.g. DocumentUploaded' },
  { name: 'subject', in: 'query', schema: { type: 'string' }, description: 'subject id (document, user, token)' },
  { name: 'since', in: 'query', schema: { type: 'string', format: 'date-time' } },
  { name: 'until', in: 'query', schema: { type: 'string', format: 'date-time' } },
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
  { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'next_cursor of the previous page' },
];

export function openApiDocument() {
  return {
    openapi: '3.1.0',
    info: {
      title: 'tenant-rag',
      version: '0.1.0',
      description:
        'Multi-tenant document Q&A. Every tenant route is scoped to the tenant of its credentials (a JWT from /v1/auth/login or an API token). ' +
        'Errors are RFC 7807 application/problem+json. Another tenant\'s ids answer 404 exactly like missing ones. ' +
        'Commands answer with the event `position`; pass it as `min_position` to read your own writes.',
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'JWT from POST /v1/auth/login, or an API token (trk_...)' },
        operator: { type: 'http', scheme: 'bearer', description: 'The operator token (ADMIN_TOKEN)' },
      },
      responses: {
        Problem: {
          description: 'RFC 7807 problem details',
          content: {
            'application/problem+json': {
              schema: {
                type: 'object',
                properties: { type: { type: 'string' }, title: { type: 'string' }, status: { type: 'integer' }, detail: { type: 'string' }, instance: { type: 'string' } },
              },
            },
          },
        },
      },
      schemas: {
        Document: {
          type: 'object',
          properties: {
            id: { type: 'string', format: 'uuid' },
            filename: { type: 'string' },
            external_id: { type: ['string', 'null'] },
            version: { type: 'integer' },
            status: { type: 'string', enum: ['pending', 'ready', 'failed'] },
            error: { type: ['string', 'null'] },
            chunk_count: { type: 'integer' },
            chunks_done: { type: 'integer' },
            chunks_total: { type: 'integer' },
            searchable: { type: 'boolean', description: 'a version of this document is searchable (an older one while a replacement is indexed)' },
            size_bytes: { type: 'integer' },
            sha256: { type: 'string' },
            created_at: { type: 'string', format: 'date-time' },
            updated_at: { type: 'string', format: 'date-time' },
          },
        },
        Passage: {
          type: 'object',
          properties: {
            n: { type: 'integer', description: 'citation number [n] (ask only)' },
            document_id: { type: 'string', format: 'uuid' },
            filename: { type: 'string' },
            chunk_index: { type: 'integer' },
            heading_path: { type: 'array', items: { type: 'string' } },
            page: { type: ['integer', 'null'] },
            score: { type: 'number', description: 'hybrid: 0.5 x semantic + 0.5 x keyword, each min-max-normalised over its top-100 ranking, in [0,1] (1 = first in both); keyword: Okapi BM25 (k1 1.2, b 0.75), unbounded; semantic: cosine similarity. Comparable within a response only.' },
            text: { type: 'string' },
          },
        },
      },
    },
    paths: {
      '/health': { get: { summary: 'Liveness', responses: { '200': ok('alive') } } },
      '/ready': { get: { summary: 'Readiness of every dependency, with the adapter in use', responses: { '200': ok('ready'), '503': ok('not ready') } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': { description: 'text exposition format' } } } },
      '/v1/tenants': {
        post: {
          summary: 'Provision a tenant (operator)',
          security: operator,
          requestBody: jsonBody({
            type: 'object',
            required: ['name', 'slug', 'owner'],
            properties: {
              name: { type: 'string' },
              slug: { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' },
              owner: { type: 'object', required: ['email', 'password'], properties: { email: { type: 'string' }, password: { type: 'string', minLength: 12 } } },
              quotas: { type: 'object', properties: { max_documents: { type: 'integer' }, max_bytes: { type: 'integer' } } },
              rate_limit: { type: 'object', properties: { per_second: { type: 'number' }, burst: { type: 'integer' } } },
            },
          }),
          responses: { '201': ok('provisioned'), '202': ok('accepted, still provisioning'), ...errors(400, 401, 409) },
        },
        get: { summary: 'List tenants (operator)', security: operator, responses: { '200': ok('tenants'), ...errors(401) } },
      },
      '/v1/tenants/{id}': {
        get: { summary: 'A tenant (operator)', security: operator, parameters: [idParam('id')], responses: { '200': ok('tenant'), ...errors(401, 404) } },
        delete: { summary: 'Delete a tenant and all its read models (operator)', security: operator, parameters: [idParam('id')], responses: { '204': { description: 'deleted' }, ...errors(401, 404) } },
      },
      '/v1/tenants/{id}/suspend': {
        post: { summary: 'Suspend: every request of the tenant answers 403 (operator)', security: operator, parameters: [idParam('id')], responses: { '200': ok('suspended'), ...errors(401, 404) } },
      },
      '/v1/tenants/{id}/reactivate': {
        post: { summary: 'Reactivate a suspended tenant (operator)', security: operator, parameters: [idParam('id')], responses: { '200': ok('active'), ...errors(401, 404) } },
      },
      '/v1/tenants/{id}/limits': {
        patch: {
          summary: 'Change quotas and rate limit (operator)',
          security: operator,
          parameters: [idParam('id')],
          requestBody: jsonBody({ type: 'object', properties: { quotas: { type: 'object' }, rate_limit: { type: 'object' } } }),
          responses: { '200': ok('changed'), ...errors(400, 401, 404) },
        },
      },
      '/v1/auth/login': {
        post: {
          summary: 'Log in as a tenant user; returns a bearer JWT',
          requestBody: jsonBody({ type: 'object', required: ['tenant', 'email', 'password'], properties: { tenant: { type: 'string', description: 'tenant slug' }, email: { type: 'string' }, password: { type: 'string' } } }),
          responses: {
            '200': ok('token', { type: 'object', properties: { access_token: { type: 'string' }, token_type: { const: 'bearer' }, expires_in: { type: 'integer' } } }),
            ...errors(400, 401, 429),
          },
        },
      },
      '/v1/me': { get: { summary: 'The caller, its tenant and role', security: bearer, responses: { '200': ok('me'), ...errors(401, 403) } } },
      '/v1/api-tokens': {
        post: {
          summary: 'Issue an API token (admin); the token is shown once',
          security: bearer,
          requestBody: jsonBody({ type: 'object', required: ['name'], properties: { name: { type: 'string' }, role: { type: 'string', enum: ['owner', 'admin', 'member', 'viewer'] } } }),
          responses: { '201': ok('token'), ...errors(400, 401, 403) },
        },
        get: { summary: 'List API tokens (prefixes only)', security: bearer, responses: { '200': ok('tokens'), ...errors(401, 403) } },
      },
      '/v1/api-tokens/{id}': { delete: { summary: 'Revoke an API token (admin)', security: bearer, parameters: [idParam('id')], responses: { '204': { description: 'revoked' }, ...errors(401, 403, 404) } } },
      '/v1/users': {
        post: {
          summary: 'Add a user to the tenant (admin)',
          security: bearer,
          requestBody: jsonBody({ type: 'object', required: ['email', 'password', 'role'], properties: { email: { type: 'string' }, password: { type: 'string' }, role: { type: 'string' } } }),
          responses: { '201': ok('user'), ...errors(400, 401, 403, 409) },
        },
        get: { summary: 'List users (admin)', security: bearer, responses: { '200': ok('users'), ...errors(401, 403) } },
      },
      '/v1/users/{id}': {
        patch: { summary: "Change a user's role (admin)", security: bearer, parameters: [idParam('id')], requestBody: jsonBody({ type: 'object', properties: { role: { type: 'string' } } }), responses: { '200': ok('changed'), ...errors(400, 401, 403, 404, 422) } },
        delete: { summary: 'Remove a user (admin)', security: bearer, parameters: [idParam('id')], responses: { '204': { description: 'removed' }, ...errors(401, 403, 404, 422) } },
      },
      '/v1/documents': {
        post: {
          summary: 'Upload a document (member); the same external_id (else filename) replaces it',
          security: bearer,
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': { schema: { type: 'object', required: ['file'], properties: { file: { type: 'string', format: 'binary' }, external_id: { type: 'string' } } } },
              'application/json': { schema: { type: 'object', required: ['filename', 'text'], properties: { filename: { type: 'string' }, text: { type: 'string' }, external_id: { type: 'string' } } } },
            },
          },
          responses: { '202': ok('accepted; indexing'), '200': ok('identical content: nothing changed'), ...errors(400, 401, 403, 409, 413, 415, 429) },
        },
        get: {
          summary: 'List documents, newest first',
          security: bearer,
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'next_cursor of the previous page' },
          ],
          responses: { '200': ok('page', { type: 'object', properties: { items: { type: 'array', items: { $ref: '#/components/schemas/Document' } }, next_cursor: { type: ['string', 'null'] } } }), ...errors(400, 401) },
        },
      },
      '/v1/documents/{id}': {
        get: { summary: 'A document and its indexing status', security: bearer, parameters: [idParam('id')], responses: { '200': ok('document', { $ref: '#/components/schemas/Document' }), ...errors(401, 404) } },
        delete: { summary: 'Delete a document from every read model (members: their own)', security: bearer, parameters: [idParam('id')], responses: { '204': { description: 'deleted' }, ...errors(401, 403, 404, 409) } },
      },
      '/v1/search': {
        post: {
          summary: 'Hybrid search (BM25 full text + vectors, convex fusion of normalised scores)',
          security: bearer,
          requestBody: jsonBody({ type: 'object', required: ['query'], properties: { query: queryText, ...searchProps } }),
          responses: { '200': ok('results', { type: 'object', properties: { results: { type: 'array', items: { $ref: '#/components/schemas/Passage' } } } }), ...errors(400, 401, 429) },
        },
      },
      '/v1/audit': {
        get: { summary: 'The tenant\'s audit log, newest first (admin)', security: bearer, parameters: auditFilters, responses: { '200': ok('page of entries'), ...errors(400, 401, 403) } },
      },
      '/v1/audit/export': {
        get: {
          summary: 'The audit log as NDJSON (admin)',
          security: bearer,
          parameters: auditFilters.filter((p) => p.name !== 'limit'),
          responses: { '200': { description: 'one entry per line', content: { 'application/x-ndjson': { schema: { type: 'string' } } } }, ...errors(400, 401, 403) },
        },
      },
      '/v1/audit/verify': {
        get: { summary: 'Check the audit hash chain (admin)', security: bearer, responses: { '200': ok('{intact, entries, broken_at, reason}'), ...errors(401, 403) } },
      },
      '/v1/usage': { get: { summary: 'Usage per day for the tenant (admin)', security: bearer, parameters: dateRange, responses: { '200': ok('days'), ...errors(400, 401, 403) } } },
      '/v1/snapshots': { get: { summary: 'The tenant\'s point-in-time snapshots and their build state (admin)', security: bearer, responses: { '200': ok('snapshots'), ...errors(401, 403) } } },
      '/v1/admin/usage': { get: { summary: 'Usage per tenant and day (operator)', security: operator, parameters: dateRange, responses: { '200': ok('days'), ...errors(400, 401) } } },
      '/v1/admin/projections': {
        get: { summary: 'Projections: version, position, lag, state, rebuild progress; indexer backlog; `embedders`: re-embedding per tenant (serving and building embedder, documents done of total); `index`: the vector index\'s in-process figures (embedded: tenantsLoaded, chunksLoaded, bytes, budgetBytes, evictions, loads, hnswTenants, hnswBuilding, hnswMinChunks, hnswSearches; null on Weaviate) (operator)', security: operator, responses: { '200': ok('projections'), ...errors(401) } },
      },
      '/v1/admin/projections/history': { get: { summary: 'Projection lag, one sample a minute, last hour (operator)', security: operator, responses: { '200': ok('samples'), ...errors(401) } } },
      '/v1/admin/projections/{name}/rebuild': {
        post: {
          summary: 'Rebuild a read model (audit, analytics, catalog) from position 0 beside the live one, then switch reads (the catalog re-links its documents to the chunk sets the tenant holds); with `tenant`, only that tenant\'s rows, swapped in place; `platform` is rebuilt in place, whole or one tenant (scratch copy swapped in, version unchanged, `inPlace: true`; schemas and roles then reconciled with the rows); 409 while a rebuild of that projection runs (operator)',
          security: operator,
          parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', enum: ['audit', 'analytics', 'catalog', 'platform'] } }],
          requestBody: {
            required: false,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  additionalProperties: false,
                  properties: { tenant: { type: 'string', description: 'slug: rebuild only this tenant\'s rows from its events; the others are not touched (404 if unknown)' } },
                },
              },
            },
          },
          responses: { '202': ok('rebuild started: progress (name, version, done, total, eventsPerSecond, etaSeconds, state, tenant?, inPlace?)'), ...errors(400, 401, 404, 409) },
        },
      },
      '/v1/admin/tenants/{id}/audit': { get: { summary: 'Recent audit events of a tenant (operator)', security: operator, parameters: [idParam('id')], responses: { '200': ok('entries'), ...errors(401, 404) } } },
      '/v1/admin/snapshots': {
        post: {
          summary: 'Build a read-only copy of a tenant\'s documents as they were at `until` (operator)',
          security: operator,
          requestBody: jsonBody({
            type: 'object',
            required: ['tenant', 'until', 'name'],
            properties: { tenant: { type: 'string', description: 'slug' }, until: { type: 'string', description: 'ISO-8601 instant or event position' }, name: { type: 'string', pattern: '^[a-z0-9_-]{1,40}$' } },
          }),
          responses: { '202': ok('building'), ...errors(400, 401, 404, 409) },
        },
        get: {
          summary: 'A tenant\'s snapshots and their build state (operator)',
          security: operator,
          parameters: [{ name: 'tenant', in: 'query', required: true, schema: { type: 'string' } }],
          responses: { '200': ok('snapshots'), ...errors(401, 404) },
        },
      },
      '/admin': { get: { summary: 'Operator page (HTML; asks for the operator token)', responses: { '200': { description: 'text/html' } } } },
      '/v1/ask': {
        post: {
          summary: 'Answer a question from the tenant\'s documents, with citations [n]; Accept: text/event-stream streams `sources`, `token`, `done` events',
          security: bearer,
          requestBody: jsonBody({ type: 'object', required: ['question'], properties: { question: queryText, stream: { type: 'boolean' }, ...searchProps } }),
          responses: {
            '200': ok('answer', {
              type: 'object',
              properties: {
                answer: { type: 'string' },
                mode: { type: 'string', enum: ['extractive', 'generative'] },
                model: { type: 'string' },
                citations: { type: 'array', items: { type: 'integer' } },
                removed_citations: { type: 'integer' },
                sources: { type: 'array', items: { $ref: '#/components/schemas/Passage' } },
              },
            }),
            ...errors(400, 401, 429, 502, 504),
          },
        },
      },
    },
  };
}
