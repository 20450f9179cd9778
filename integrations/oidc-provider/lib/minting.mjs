// Minting exactly what the sidecar's `allow` says (OP-3, OP-34, OP-59, OP-63), with
// oidc-provider's own token models, formats and keys.
//
// The sidecar's grant names the audience, the `authorization_details`, the scope, `txn`, `act`,
// the key (`cnf`) and an `expires_at` no later than the approval's `approved_until`. Tokens the
// adapter mints itself (client credentials, DTR redemption, transaction authorization) are
// `ClientCredentials` tokens whose subject is the client; CIBA tokens are minted by
// oidc-provider's own CIBA grant, bounded by the ttl hooks below.

import { errors } from 'oidc-provider';

import { secondsUntil } from './wire.mjs';

// The grant a token is being minted for: set on the token by the adapter's own minting, and on
// the request (ctx.state) for the tokens oidc-provider's CIBA grant mints, so that the ttl,
// `authorization_details` and extra-claims hooks read one source.
const grants = new WeakMap();
const GRANT = Symbol('arop grant');

export function useGrant(ctx, grant) {
  ctx.state[GRANT] = grant;
}

export function grantOf(ctx, token) {
  return (token && grants.get(token)) ?? ctx?.state?.[GRANT];
}

// A positive lifetime no later than the grant's end, or `invalid_grant` if it already ended
// (a grant redeemed in the last second of its approval).
export function lifetimeOf(grant) {
  const seconds = secondsUntil(grant.expires_at);
  if (!(seconds >= 1)) {
    throw new errors.InvalidGrant('the approval has ended');
  }
  return Math.min(seconds, grant.expires_in);
}

// The claims the sidecar adds to the access token besides the standard ones.
export function extraClaimsOf(grant) {
  if (!grant) return undefined;
  const claims = {};
  if (grant.txn !== undefined) claims.txn = grant.txn;
  if (grant.actor !== undefined) claims.act = grant.actor;
  return Object.keys(claims).length ? claims : undefined;
}

// The sender constraint must be the one the sidecar recorded (OP-63): the key the client proved
// possession of now. A mismatch would be a bug on either side; nothing is minted then.
function checkKey(grant, jkt) {
  if ((grant.cnf?.jkt ?? null) !== (jkt ?? null) || grant.cnf?.['x5t#S256'] !== undefined) {
    throw new Error('the sidecar granted a token for another key than the one presented');
  }
}

export async function mintForClient(provider, resourceServerFor, client, grant, jkt) {
  checkKey(grant, jkt);
  if (grant.subject.id !== client.clientId) {
    // Grants whose subject is a user (token exchange) need an account and a grant at the AS:
    // this adapter serves the client-credentials shaped ones only.
    throw new Error('the sidecar granted a token for a subject other than the client');
  }
  if (grant.audience.length !== 1) {
    throw new errors.InvalidTarget('exactly one resource indicator is needed for this grant');
  }
  const token = new provider.ClientCredentials({ client, scope: grant.scope, expiresIn: lifetimeOf(grant) });
  token.resourceServer = resourceServerFor(grant.audience[0]);
  if (jkt) {
    token.setThumbprint('jkt', jkt);
  }
  token.rar = grant.authorization_details;
  grants.set(token, grant);
  const accessToken = await token.save();
  return {
    access_token: accessToken,
    token_type: token.tokenType,
    expires_in: token.expiration,
    ...(grant.authorization_details ? { authorization_details: grant.authorization_details } : {}),
    ...(grant.scope ? { scope: grant.scope } : {}),
  };
}
