/**
 * Every event type of tenant-rag: the public contract for outside consumers.
 * Facts in the past tense; tenant-tagged (stream id + metadata.tenantId); versioned by
 * metadata.schemaVersion. JSON Schemas per type and version live in contracts/schemas/.
 * Changes are additive; a breaking change gets a new schemaVersion and an upcaster (upcast.ts).
 */
import type { DomainEvent } from './metadata';

export type Role = 'owner' | 'admin' | 'member' | 'viewer';
export const ROLES: readonly Role[] = ['owner', 'admin', 'member', 'viewer'];

export interface Quotas {
  maxDocuments: number;
  maxBytes: number;
}
export interface RateLimit {
  perSecond: number;
  burst: number;
}

// ---- stream `tenant-<tenantId>` -------------------------------------------------------------
export type TenantProvisioned = DomainEvent<'TenantProvisioned', { tenantId: string; name: string; slug: string; quotas: Quotas; rateLimit: RateLimit }>;
/** passwordHash is an argon2id PHC string; never exposed by any read API or the audit log. */
export type UserAdded = DomainEvent<'UserAdded', { userId: string; email: string; role: Role; passwordHash: string }>;
export type UserRoleChanged = DomainEvent<'UserRoleChanged', { userId: string; role: Role; previousRole: Role }>;
export type UserRemoved = DomainEvent<'UserRemoved', { userId: string }>;
/** hash = SHA-256 (hex) of the whole token; prefix = first characters shown to humans. */
export type ApiTokenIssued = DomainEvent<'ApiTokenIssued', { tokenId: string; name: string; prefix: string; hash: string; role: Role }>;
export type ApiTokenRevoked = DomainEvent<'ApiTokenRevoked', { tokenId: string }>;
export type TenantSuspended = DomainEvent<'TenantSuspended', { reason: string }>;
export type TenantReactivated = DomainEvent<'TenantReactivated', Record<string, never>>;
export type TenantLimitsChanged = DomainEvent<'TenantLimitsChanged', { quotas: Quotas; rateLimit: RateLimit }>;
export type TenantDeleted = DomainEvent<'TenantDeleted', Record<string, never>>;

export type TenantEvent =
  | TenantProvisioned
  | UserAdded
  | UserRoleChanged
  | UserRemoved
  | ApiTokenIssued
  | ApiTokenRevoked
  | TenantSuspended
  | TenantReactivated
  | TenantLimitsChanged
  | TenantDeleted;

// ---- stream `security-<tenantId>` -----------------------------------------------------------
export type LoginSucceeded = DomainEvent<'LoginSucceeded', { userId: string }>;
/** emailHash: SHA-256 of the lower-cased email tried, so failures can be grouped without storing it. */
export type LoginFailed = DomainEvent<'LoginFailed', { emailHash: string; reason: 'invalid_credentials' | 'throttled' }>;
export type SecurityEvent = LoginSucceeded | LoginFailed;

// ---- stream `document-<tenantId>.<documentId>` ----------------------------------------------
export interface DocumentContent {
  documentId: string;
  filename: string;
  externalId: string | null;
  contentType: string;
  sizeBytes: number;
  /** SHA-256 of the bytes; the bytes live in the content store under this key (claim check),
   *  so no event carries a document body and every event fits a 1 MB Kafka message. */
  sha256: string;
  /** 1 for the first upload, +1 per replacement. */
  version: number;
  /** Actor who uploaded this version (members may delete only their own documents). */
  uploadedBy: string;
}
export type DocumentUploaded = DomainEvent<'DocumentUploaded', DocumentContent>;
export type DocumentReplaced = DomainEvent<'DocumentReplaced', DocumentContent & { previousSha256: string }>;
export type DocumentDeleted = DomainEvent<'DocumentDeleted', { documentId: string; version: number }>;
/** Appended by the indexing workers when a version became searchable (or could not be read). */
export type DocumentIndexed = DomainEvent<'DocumentIndexed', { documentId: string; version: number; chunkCount: number; embedderId: string; format: string }>;
export type DocumentIndexingFailed = DomainEvent<'DocumentIndexingFailed', { documentId: string; version: number; reason: string }>;
export type DocumentEvent = DocumentUploaded | DocumentReplaced | DocumentDeleted | DocumentIndexed | DocumentIndexingFailed;

// ---- stream `activity-<tenantId>.<day>`: what was shown to whom ----------------------------
export type SearchPerformed = DomainEvent<'SearchPerformed', { queryHash: string; mode: string; topK: number; resultChunkIds: string[] }>;
export type QuestionAsked = DomainEvent<'QuestionAsked', { questionHash: string; model: string; sourceChunkIds: string[]; promptTokens: number; completionTokens: number }>;
export type ActivityEvent = SearchPerformed | QuestionAsked;

export type AnyEvent = TenantEvent | SecurityEvent | DocumentEvent | ActivityEvent;
export type EventType = AnyEvent['type'];

/** Schema version written today per event type (read side upcasts older ones). */
export const CURRENT_SCHEMA_VERSION: Record<string, number> = {
  TenantProvisioned: 1,
  UserAdded: 1,
  UserRoleChanged: 1,
  UserRemoved: 1,
  ApiTokenIssued: 1,
  ApiTokenRevoked: 1,
  TenantSuspended: 1,
  TenantReactivated: 1,
  TenantLimitsChanged: 1,
  TenantDeleted: 1,
  LoginSucceeded: 1,
  LoginFailed: 1,
  DocumentUploaded: 1,
  DocumentReplaced: 1,
  DocumentDeleted: 1,
  DocumentIndexed: 1,
  DocumentIndexingFailed: 1,
  SearchPerformed: 1,
  QuestionAsked: 1,
};
