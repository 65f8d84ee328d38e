import type { DocumentEvent } from '../../contracts/events';
import { assertNever } from '../core/errors';

export type DocumentState =
  | { status: 'none' }
  | { status: 'active'; documentId: string; sha256: string; version: number; uploadedBy: string; filename: string }
  | { status: 'deleted'; documentId: string; version: number };

export const initialState = (): DocumentState => ({ status: 'none' });

export function evolve(state: DocumentState, event: DocumentEvent): DocumentState {
  switch (event.type) {
    case 'DocumentUploaded':
    case 'DocumentReplaced': {
      const { documentId, sha256, version, uploadedBy, filename } = event.data;
      return { status: 'active', documentId, sha256, version, uploadedBy, filename };
    }
    case 'DocumentDeleted':
      return { status: 'deleted', documentId: event.data.documentId, version: event.data.version };
    case 'DocumentIndexed':
    case 'DocumentIndexingFailed':
      // Outcomes of indexing: facts for the read side, no bearing on what a command may do.
      return state;
    default:
      return assertNever(event);
  }
}

export const documentAggregate = { initialState, evolve };
