import type { Quotas, RateLimit, Role, TenantEvent } from '../../contracts/events';
import { ConflictError, ForbiddenError, IllegalStateError, NotFoundError, assertNever } from '../core/errors';
import type { TenantState } from './tenant';

export type TenantCommand =
  | { type: 'ProvisionTenant'; data: { tenantId: string; name: string; slug: string; quotas: Quotas; rateLimit: RateLimit; owner: { userId: string; email: string; passwordHash: string } } }
  | { type: 'AddUser'; data: { userId: string; email: string; role: Role; passwordHash: string } }
  | { type: 'ChangeUserRole'; data: { userId: string; role: Role } }
  | { type: 'RemoveUser'; data: { userId: string } }
  | { type: 'IssueApiToken'; data: { tokenId: string; name: string; prefix: string; hash: string; role: Role } }
  | { type: 'RevokeApiToken'; data: { tokenId: string } }
  | { type: 'SuspendTenant'; data: { reason: string } }
  | { type: 'ReactivateTenant' }
  | { type: 'ChangeTenantLimits'; data: { quotas: Quotas; rateLimit: RateLimit } }
  | { type: 'DeleteTenant' };

type Live = Exclude<TenantState, { status: 'none' }>;

function live(state: TenantState): Live {
  if (state.status === 'none' || state.status === 'deleted') throw new NotFoundError('Tenant');
  return state;
}

function active(state: TenantState): Live {
  const s = live(state);
  if (s.status === 'suspended') throw new ForbiddenError('tenant is suspended');
  return s;
}

/** Pure: (command, state) -> events, or a typed error. */
export function decide(command: TenantCommand, state: TenantState): TenantEvent[] {
  switch (command.type) {
    case 'ProvisionTenant': {
      if (state.status !== 'none') throw new ConflictError(`slug "${command.data.slug}" is taken`);
      const { tenantId, name, slug, quotas, rateLimit, owner } = command.data;
      return [
        { type: 'TenantProvisioned', data: { tenantId, name, slug, quotas, rateLimit } },
        { type: 'UserAdded', data: { userId: owner.userId, email: owner.email, role: 'owner', passwordHash: owner.passwordHash } },
      ];
    }
    case 'AddUser': {
      const s = active(state);
      for (const m of s.members.values()) {
        if (m.email === command.data.email) throw new ConflictError('a user with this email exists');
      }
      return [{ type: 'UserAdded', data: command.data }];
    }
    case 'ChangeUserRole': {
      const s = active(state);
      const m = s.members.get(command.data.userId);
      if (!m) throw new NotFoundError('User');
      if (m.role === command.data.role) return [];
      if (m.role === 'owner' && countOwners(s) === 1) throw new IllegalStateError('a tenant keeps at least one owner');
      return [{ type: 'UserRoleChanged', data: { userId: m.userId, role: command.data.role, previousRole: m.role } }];
    }
    case 'RemoveUser': {
      const s = active(state);
      const m = s.members.get(command.data.userId);
      if (!m) throw new NotFoundError('User');
      if (m.role === 'owner' && countOwners(s) === 1) throw new IllegalStateError('a tenant keeps at least one owner');
      return [{ type: 'UserRemoved', data: { userId: m.userId } }];
    }
    case 'IssueApiToken': {
      active(state);
      return [{ type: 'ApiTokenIssued', data: command.data }];
    }
    case 'RevokeApiToken': {
      const s = live(state);
      const t = s.tokens.get(command.data.tokenId);
      if (!t) throw new NotFoundError('API token');
      if (t.revoked) return [];
      return [{ type: 'ApiTokenRevoked', data: { tokenId: t.tokenId } }];
    }
    case 'SuspendTenant': {
      const s = live(state);
      if (s.status === 'suspended') return [];
      return [{ type: 'TenantSuspended', data: command.data }];
    }
    case 'ReactivateTenant': {
      const s = live(state);
      if (s.status === 'active') return [];
      return [{ type: 'TenantReactivated', data: {} }];
    }
    case 'ChangeTenantLimits': {
      live(state);
      return [{ type: 'TenantLimitsChanged', data: command.data }];
    }
    case 'DeleteTenant': {
      live(state);
      return [{ type: 'TenantDeleted', data: {} }];
    }
    default:
      return assertNever(command);
  }
}

function countOwners(s: Live): number {
  let n = 0;
  for (const m of s.members.values()) if (m.role === 'owner') n++;
  return n;
}
