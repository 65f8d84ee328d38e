import type { DocumentEvent } from '../../contracts/events';
import { deciderSpec } from '../../test/support/decider';
import { ForbiddenError, NotFoundError } from '../core/errors';
import { decide, type DocumentCommand } from './decide';
import { evolve, initialState } from './document';

const given = deciderSpec<ReturnType<typeof initialState>, DocumentEvent, DocumentCommand>({ initialState, evolve, decide });
const base = { documentId: 'd1', filename: 'a.md', externalId: null, contentType: 'text/markdown', sizeBytes: 10, sha256: 'aaa', uploadedBy: 'user:u1' };
const upload = (over: Partial<typeof base> = {}): DocumentCommand => ({ type: 'UploadDocument', data: { ...base, ...over } });
const uploaded = (over: Partial<typeof base> = {}, version = 1): DocumentEvent => ({ type: 'DocumentUploaded', data: { ...base, ...over, version } });

describe('document decider', () => {
  it('uploads a new document as version 1', () => given([]).when(upload()).then([uploaded()]));

  it('treats the same content under the same key as a no-op', () => given([uploaded()]).when(upload()).then([]));

  it('replaces with new content, bumping the version', () =>
    given([uploaded()])
      .when(upload({ sha256: 'bbb', sizeBytes: 20 }))
      .then([{ type: 'DocumentReplaced', data: { ...base, sha256: 'bbb', sizeBytes: 20, version: 2, previousSha256: 'aaa' } }]));

  it('uploads again after a delete with the next version', () =>
    given([uploaded(), { type: 'DocumentDeleted', data: { documentId: 'd1', version: 1 } }])
      .when(upload())
      .then([uploaded({}, 2)]));

  it('deletes an active document', () =>
    given([uploaded()])
      .when({ type: 'DeleteDocument', data: { documentId: 'd1', actor: 'user:u1', role: 'member' } })
      .then([{ type: 'DocumentDeleted', data: { documentId: 'd1', version: 1 } }]));

  it('answers 404 for a document that does not exist or is deleted', () => {
    given([]).when({ type: 'DeleteDocument', data: { documentId: 'd1', actor: 'user:u1', role: 'owner' } }).thenThrows(NotFoundError);
    given([uploaded(), { type: 'DocumentDeleted', data: { documentId: 'd1', version: 1 } }])
      .when({ type: 'DeleteDocument', data: { documentId: 'd1', actor: 'user:u1', role: 'owner' } })
      .thenThrows(NotFoundError);
  });

  it("forbids a member to delete another member's document, and any viewer", () => {
    given([uploaded()]).when({ type: 'DeleteDocument', data: { documentId: 'd1', actor: 'user:u2', role: 'member' } }).thenThrows(ForbiddenError);
    given([uploaded()]).when({ type: 'DeleteDocument', data: { documentId: 'd1', actor: 'user:u1', role: 'viewer' } }).thenThrows(ForbiddenError);
  });

  it('lets an admin delete anyone\'s document', () =>
    given([uploaded()])
      .when({ type: 'DeleteDocument', data: { documentId: 'd1', actor: 'user:u9', role: 'admin' } })
      .then([{ type: 'DocumentDeleted', data: { documentId: 'd1', version: 1 } }]));
});
