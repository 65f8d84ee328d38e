import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { assertTenantId } from '../../contracts/naming';

/**
 * Content-addressed store for document bytes (the "claim check" of DocumentUploaded): events
 * carry the SHA-256, so no event holds a document body and every event fits a 1 MB Kafka message.
 * Keyed by tenant: the same bytes uploaded by two tenants are two rows, never shared.
 */
export interface ContentStore {
  put(tenantId: string, bytes: Buffer): Promise<string>;
  get(tenantId: string, sha256: string): Promise<Buffer | null>;
  deleteTenant(tenantId: string): Promise<void>;
  delete(tenantId: string, sha256: string): Promise<void>;
}

export const sha256Hex = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex');

export function createPostgresContentStore(pool: Pool): ContentStore {
  return {
    async put(tenantId, bytes) {
      const sha = sha256Hex(bytes);
      await pool.query(
        'INSERT INTO content.blobs (tenant_id, sha256, size_bytes, bytes) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
        [assertTenantId(tenantId), sha, bytes.length, bytes],
      );
      return sha;
    },
    async get(tenantId, sha256) {
      const r = await pool.query<{ bytes: Buffer }>('SELECT bytes FROM content.blobs WHERE tenant_id = $1 AND sha256 = $2', [assertTenantId(tenantId), sha256]);
      return r.rows[0]?.bytes ?? null;
    },
    async delete(tenantId, sha256) {
      await pool.query('DELETE FROM content.blobs WHERE tenant_id = $1 AND sha256 = $2', [assertTenantId(tenantId), sha256]);
    },
    async deleteTenant(tenantId) {
      await pool.query('DELETE FROM content.blobs WHERE tenant_id = $1', [assertTenantId(tenantId)]);
    },
  };
}
