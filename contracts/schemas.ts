/**
 * JSON Schemas (draft 2020-12) of every event's `data`, per type and schema version, plus the
 * envelope that travels on Kafka. `npm run contracts:schemas` writes them to contracts/schemas/;
 * a unit test keeps the files and this source in step.
 */
const str = { type: 'string' } as const;
const uuid = { type: 'string', format: 'uuid' } as const;
const int = { type: 'integer', minimum: 0 } as const;
const role = { type: 'string', enum: ['owner', 'admin', 'member', 'viewer'] } as const;
const sha256 = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;
const obj = (properties: Record<string, unknown>, required = Object.keys(properties)) => ({ type: 'object', properties, required, additionalProperties: true });
const quotas = obj({ maxDocuments: int, maxBytes: int });
const rateLimit = obj({ perSecond: { type: 'number', minimum: 0 }, burst: int });
const documentContent = {
  documentId: uuid,
  filename: str,
  externalId: { type: ['string', 'null'] },
  contentType: str,
  sizeBytes: int,
  sha256,
  version: { type: 'integer', minimum: 1 },
  uploadedBy: str,
};

export const EVENT_SCHEMAS: Record<string, Record<number, { description: string; stream: string; data: object }>> = {
  TenantProvisioned: { 1: { stream: 'tenant', description: 'A tenant was provisioned by an operator.', data: obj({ tenantId: uuid, name: str, slug: str, quotas, rateLimit }) } },
  UserAdded: {
    1: { stream: 'tenant', description: 'A user joined the tenant. passwordHash is an argon2id PHC string; consumers must not expose it.', data: obj({ userId: uuid, email: str, role, passwordHash: str }) },
  },
  UserRoleChanged: { 1: { stream: 'tenant', description: "A user's role changed.", data: obj({ userId: uuid, role, previousRole: role }) } },
  UserRemoved: { 1: { stream: 'tenant', description: 'A user left the tenant.', data: obj({ userId: uuid }) } },
  ApiTokenIssued: { 1: { stream: 'tenant', description: 'An API token was issued (only its SHA-256 and display prefix are recorded).', data: obj({ tokenId: uuid, name: str, prefix: str, hash: sha256, role }) } },
  ApiTokenRevoked: { 1: { stream: 'tenant', description: 'An API token was revoked.', data: obj({ tokenId: uuid }) } },
  TenantSuspended: { 1: { stream: 'tenant', description: 'An operator suspended the tenant.', data: obj({ reason: str }) } },
  TenantReactivated: { 1: { stream: 'tenant', description: 'An operator reactivated the tenant.', data: obj({}) } },
  TenantLimitsChanged: { 1: { stream: 'tenant', description: 'Quotas or rate limit changed.', data: obj({ quotas, rateLimit }) } },
  TenantDeleted: { 1: { stream: 'tenant', description: 'The tenant was deleted; its streams are erased to tombstones afterwards.', data: obj({}) } },
  LoginSucceeded: { 1: { stream: 'security', description: 'A user logged in.', data: obj({ userId: uuid }) } },
  LoginFailed: {
    1: { stream: 'security', description: 'A login failed (the email tried is recorded only as a SHA-256).', data: obj({ emailHash: sha256, reason: { type: 'string', enum: ['invalid_credentials', 'throttled'] } }) },
  },
  DocumentUploaded: { 1: { stream: 'document', description: 'A document was uploaded; its bytes are in the content store under sha256.', data: obj(documentContent) } },
  DocumentReplaced: { 1: { stream: 'document', description: 'New content replaced a document (same external id or filename).', data: obj({ ...documentContent, previousSha256: sha256 }) } },
  DocumentDeleted: { 1: { stream: 'document', description: 'A document was deleted.', data: obj({ documentId: uuid, version: int }) } },
  DocumentIndexed: { 1: { stream: 'document', description: 'A document version became searchable.', data: obj({ documentId: uuid, version: int, chunkCount: int, embedderId: str, format: str }) } },
  DocumentIndexingFailed: { 1: { stream: 'document', description: 'A document version could not be indexed; reason is for people.', data: obj({ documentId: uuid, version: int, reason: str }) } },
  SearchPerformed: {
    1: { stream: 'activity', description: 'A search was run (the query only as a SHA-256) and these chunks were shown.', data: obj({ queryHash: sha256, mode: str, topK: int, resultChunkIds: { type: 'array', items: str } }) },
  },
  QuestionAsked: {
    1: {
      stream: 'activity',
      description: 'A question was answered (the question only as a SHA-256) from these chunks, by this model.',
      data: obj({ questionHash: sha256, model: str, sourceChunkIds: { type: 'array', items: str }, promptTokens: int, completionTokens: int }),
    },
  },
};

export const ENVELOPE_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://tenant-rag.dev/schemas/envelope.json',
  title: 'Kafka message value of every tenant-rag event',
  ...obj({
    eventId: uuid,
    type: str,
    data: { type: 'object' },
    metadata: obj({ tenantId: uuid, actor: str, correlationId: str, causationId: { type: ['string', 'null'] }, schemaVersion: { type: 'integer', minimum: 1 }, occurredAt: { type: 'string', format: 'date-time' } }),
    streamId: str,
    streamPosition: { type: 'string', pattern: '^[0-9]+$' },
    position: str,
    recordedAt: { type: 'string', format: 'date-time' },
  }),
};

export function schemaFiles(): Record<string, object> {
  const files: Record<string, object> = { 'envelope.json': ENVELOPE_SCHEMA };
  for (const [type, versions] of Object.entries(EVENT_SCHEMAS)) {
    for (const [version, s] of Object.entries(versions)) {
      files[`${type}.v${version}.json`] = {
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        $id: `https://tenant-rag.dev/schemas/${type}.v${version}.json`,
        title: `${type} data, schema version ${version}`,
        description: `${s.description} Stream category: ${s.stream} (topic tenant-rag.${s.stream}).`,
        ...s.data,
      };
    }
  }
  return files;
}
