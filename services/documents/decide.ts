import type { DocumentEvent, Role } from '../../contracts/events';
import { ForbiddenError, NotFoundError, assertNever } from '../core/errors';
import type { DocumentState } from './document';

export interface UploadDocument {
  type: 'UploadDocument';
  data: { documentId: string; filename: string; externalId: string | null; contentType: string; sizeBytes: number; sha256: string; uploadedBy: string };
}
export interface DeleteDocument {
  type: 'DeleteDocument';
  data: { documentId: string; actor: string; role: Role };
}
export type DocumentCommand = UploadDocument | DeleteDocument;

/**
 * Pure decider. A document's id is derived from its external id (or filename), so uploading the
 * same key again lands on the same stream: identical content is a no-op, new content replaces.
 */
export function decide(command: DocumentCommand, state: DocumentState): DocumentEvent[] {
  switch (command.type) {
    case 'UploadDocument': {
      const d = command.data;
      if (state.status === 'active') {
        if (state.sha256 === d.sha256 && state.filename === d.filename) return [];
        return [{ type: 'DocumentReplaced', data: { ...d, version: state.version + 1, previousSha256: state.sha256 } }];
      }
      const version = state.status === 'deleted' ? state.version + 1 : 1;
      return [{ type: 'DocumentUploaded', data: { ...d, version } }];
    }
    case 'DeleteDocument': {
      if (state.status !== 'active') throw new NotFoundError('Document');
      const { role, actor } = command.data;
      if (role === 'viewer') throw new ForbiddenError('viewers cannot delete documents');
      if (role === 'member' && state.uploadedBy !== actor) throw new ForbiddenError('members may delete only their own documents');
      return [{ type: 'DocumentDeleted', data: { documentId: state.documentId, version: state.version } }];
    }
    default:
      return assertNever(command);
  }
}
