import type { Quotas, RateLimit, Role, TenantEvent } from '../../contracts/events';
import { assertNever } from '../core/errors';

export interface Member {
  userId: string;
  email: string;
  role: Role;
}
export interface Token {
  tokenId: string;
  role: Role;
  revoked: boolean;
}

export type TenantState =
  | { status: 'none' }
  | {
      status: 'active' | 'suspended' | 'deleted';
      tenantId: string;
      name: string;
      slug: string;
      quotas: Quotas;
      rateLimit: RateLimit;
      members: Map<string, Member>;
      tokens: Map<string, Token>;
    };

export const initialState = (): TenantState => ({ status: 'none' });

export function evolve(state: TenantState, event: TenantEvent): TenantState {
  if (event.type === 'TenantProvisioned') {
    const { tenantId, name, slug, quotas, rateLimit } = event.data;
    return { status: 'active', tenantId, name, slug, quotas, rateLimit, members: new Map(), tokens: new Map() };
  }
  if (state.status === 'none') return state;
  switch (event.type) {
    case 'UserAdded': {
      const members = new Map(state.members);
      members.set(event.data.userId, { userId: event.data.userId, email: event.data.email, role: event.data.role });
      return { ...state, members };
    }
    case 'UserRoleChanged': {
      const members = new Map(state.members);
      const m = members.get(event.data.userId);
      if (m) members.set(m.userId, { ...m, role: event.data.role });
      return { ...state, members };
    }
    case 'UserRemoved': {
      const members = new Map(state.members);
      members.delete(event.data.userId);
      return { ...state, members };
    }
    case 'ApiTokenIssued': {
      const tokens = new Map(state.tokens);
      tokens.set(event.data.tokenId, { tokenId: event.data.tokenId, role: event.data.role, revoked: false });
      return { ...state, tokens };
    }
    case 'ApiTokenRevoked': {
      const tokens = new Map(state.tokens);
      const t = tokens.get(event.data.tokenId);
      if (t) tokens.set(t.tokenId, { ...t, revoked: true });
      return { ...state, tokens };
    }
    case 'TenantSuspended':
      return { ...state, status: 'suspended' };
    case 'TenantReactivated':
      return { ...state, status: 'active' };
    case 'TenantLimitsChanged':
      return { ...state, quotas: event.data.quotas, rateLimit: event.data.rateLimit };
    case 'TenantDeleted':
      return { ...state, status: 'deleted' };
    default:
      return assertNever(event);
  }
}

export const tenantAggregate = { initialState, evolve };
