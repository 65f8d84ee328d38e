/** Metadata carried by every event, whatever the store or bus. Part of the public contract. */
export interface EventMetadata {
  /** Tenant the event belongs to; must equal the tenant in the stream id (projectors check). */
  tenantId: string;
  /** Who caused it: `user:<id>`, `token:<id>`, `operator`, `system`. */
  actor: string;
  correlationId: string;
  causationId: string | null;
  /** Version of the event's data schema (see contracts/schemas). */
  schemaVersion: number;
  /** ISO-8601 instant the command was decided. */
  occurredAt: string;
}

/** An event as a decider returns it: type and data; the command handler adds metadata. */
export interface DomainEvent<T extends string = string, D = unknown> {
  type: T;
  data: D;
}
