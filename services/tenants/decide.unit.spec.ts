import type { TenantEvent } from '../../contracts/events';
import { deciderSpec } from '../../test/support/decider';
import { ConflictError, ForbiddenError, IllegalStateError, NotFoundError } from '../core/errors';
import { decide, type TenantCommand } from './decide';
import { evolve, initialState } from './tenant';

const given = deciderSpec<ReturnType<typeof initialState>, TenantEvent, TenantCommand>({ initialState, evolve, decide });
const T = '11111111-1111-4111-8111-111111111111';
const quotas = { maxDocuments: 10, maxBytes: 1000 };
const rateLimit = { perSecond: 100, burst: 200 };
const provisioned: TenantEvent[] = [
  { type: 'TenantProvisioned', data: { tenantId: T, name: 'Acme', slug: 'acme', quotas, rateLimit } },
  { type: 'UserAdded', data: { userId: 'u1', email: 'o@acme.test', role: 'owner', passwordHash: 'h' } },
];
const provision: TenantCommand = {
  type: 'ProvisionTenant',
  data: { tenantId: T, name: 'Acme', slug: 'acme', quotas, rateLimit, owner: { userId: 'u1', email: 'o@acme.test', passwordHash: 'h' } },
};

describe('tenant decider', () => {
  it('provisions a tenant with its owner', () => given([]).when(provision).then(provisioned));

  it('refuses a taken slug', () => given(provisioned).when(provision).thenThrows(ConflictError));

  it('adds a user with a unique email only', () => {
    given(provisioned).when({ type: 'AddUser', data: { userId: 'u2', email: 'm@acme.test', role: 'member', passwordHash: 'h' } }).then([
      { type: 'UserAdded', data: { userId: 'u2', email: 'm@acme.test', role: 'member', passwordHash: 'h' } },
    ]);
    given(provisioned).when({ type: 'AddUser', data: { userId: 'u2', email: 'o@acme.test', role: 'member', passwordHash: 'h' } }).thenThrows(ConflictError);
  });

  it('keeps at least one owner', () => {
    given(provisioned).when({ type: 'ChangeUserRole', data: { userId: 'u1', role: 'admin' } }).thenThrows(IllegalStateError);
    given(provisioned).when({ type: 'RemoveUser', data: { userId: 'u1' } }).thenThrows(IllegalStateError);
  });

  it('issues and revokes API tokens; revoking twice changes nothing; unknown tokens are 404', () => {
    const issued: TenantEvent = { type: 'ApiTokenIssued', data: { tokenId: 't1', name: 'ci', prefix: 'trk_abc', hash: 'x', role: 'member' } };
    given(provisioned).when({ type: 'IssueApiToken', data: issued.data as never }).then([issued]);
    given([...provisioned, issued]).when({ type: 'RevokeApiToken', data: { tokenId: 't1' } }).then([{ type: 'ApiTokenRevoked', data: { tokenId: 't1' } }]);
    given([...provisioned, issued, { type: 'ApiTokenRevoked', data: { tokenId: 't1' } }]).when({ type: 'RevokeApiToken', data: { tokenId: 't1' } }).then([]);
    given(provisioned).when({ type: 'RevokeApiToken', data: { tokenId: 'nope' } }).thenThrows(NotFoundError);
  });

  it('suspends, refuses changes while suspended, reactivates', () => {
    const suspended: TenantEvent[] = [...provisioned, { type: 'TenantSuspended', data: { reason: 'unpaid' } }];
    given(provisioned).when({ type: 'SuspendTenant', data: { reason: 'unpaid' } }).then([{ type: 'TenantSuspended', data: { reason: 'unpaid' } }]);
    given(suspended).when({ type: 'AddUser', data: { userId: 'u2', email: 'x@acme.test', role: 'viewer', passwordHash: 'h' } }).thenThrows(ForbiddenError);
    given(suspended).when({ type: 'ReactivateTenant' }).then([{ type: 'TenantReactivated', data: {} }]);
  });

  it('treats a deleted tenant as gone', () => {
    given([...provisioned, { type: 'TenantDeleted', data: {} }]).when({ type: 'SuspendTenant', data: { reason: 'x' } }).thenThrows(NotFoundError);
    given([]).when({ type: 'DeleteTenant' }).thenThrows(NotFoundError);
  });
});
