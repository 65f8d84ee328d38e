/**
 * The one place that builds tenant-scoped names: stream ids, Postgres schema and role names,
 * Weaviate tenant names, Redis keys and Kafka keys. Nothing else concatenates a tenant id.
 *
 * Stream ids have the shape `<category>-<tenantId>` or `<category>-<tenantId>.<entityId>`;
 * the category (text before the first '-') names the Kafka topic, the tenant id is parsed back
 * from the stream id so a projector can check it against the event's metadata.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type StreamCategory = 'tenant' | 'slug' | 'security' | 'document' | 'activity';

export function assertTenantId(tenantId: string): string {
  if (!UUID.test(tenantId)) throw new Error(`not a tenant id: ${JSON.stringify(tenantId).slice(0, 60)}`);
  return tenantId;
}

export function streamId(category: StreamCategory, tenantId: string, entityId?: string): string {
  assertTenantId(tenantId);
  if (entityId !== undefined && !/^[A-Za-z0-9_:-]{1,128}$/.test(entityId)) {
    throw new Error('entity id must be 1-128 characters of [A-Za-z0-9_:-]');
  }
  return entityId === undefined ? `${category}-${tenantId}` : `${category}-${tenantId}.${entityId}`;
}

/** Slug reservations are global (one tenant per slug), so they are keyed by slug, not tenant. */
export function slugStreamId(slug: string): string {
  return `slug-${slug}`;
}

export interface ParsedStreamId {
  category: string;
  tenantId: string | null;
  entityId: string | null;
}

export function parseStreamId(id: string): ParsedStreamId {
  const dash = id.indexOf('-');
  if (dash < 0) return { category: id, tenantId: null, entityId: null };
  const category = id.slice(0, dash);
  const rest = id.slice(dash + 1);
  const candidate = rest.slice(0, 36);
  if (!UUID.test(candidate)) return { category, tenantId: null, entityId: null };
  const entity = rest.length > 37 && rest[36] === '.' ? rest.slice(37) : null;
  return { category, tenantId: candidate, entityId: entity };
}

export function categoryOf(id: string): string {
  return parseStreamId(id).category;
}

const compact = (tenantId: string) => assertTenantId(tenantId).replace(/-/g, '');

/** Postgres schema holding one tenant's read models. */
export function tenantSchema(tenantId: string): string {
  return `t_${compact(tenantId)}`;
}

/** Postgres role that may use only that tenant's schema. */
export function tenantRole(tenantId: string): string {
  return `t_${compact(tenantId)}_rw`;
}

/** Schema of a read-only point-in-time copy built by `replay --into <name>`. */
export function snapshotSchema(tenantId: string, name: string): string {
  if (!/^[a-z0-9_]{1,24}$/.test(name)) throw new Error('snapshot name must be 1-24 of [a-z0-9_]');
  return `s_${compact(tenantId)}_${name}`;
}

/** Weaviate tenant (shard) name. */
export function weaviateTenant(tenantId: string): string {
  return `t${compact(tenantId)}`;
}

/** Redis key, always prefixed by the tenant. */
export function redisKey(tenantId: string, ...parts: string[]): string {
  return ['tr', assertTenantId(tenantId), ...parts].join(':');
}

/** Kafka message key: a tenant's events go to one partition, so they stay in order. */
export function kafkaKey(tenantId: string): string {
  return assertTenantId(tenantId);
}

/**
 * Kafka topic for a stream category: `tenant-rag.<category>`, or `tenant-rag.<namespace>.<category>`
 * when several deployments (or test runs) share one cluster (KAFKA_NAMESPACE).
 */
export function topicFor(category: string, namespace = ''): string {
  return namespace ? `tenant-rag.${namespace}.${category}` : `tenant-rag.${category}`;
}

/** Consumer group of a projection version: `proj.<name>.v<N>` (prefixed by the namespace if any). */
export function consumerGroup(checkpointName: string, namespace = ''): string {
  return namespace ? `${namespace}.${checkpointName}` : checkpointName;
}
