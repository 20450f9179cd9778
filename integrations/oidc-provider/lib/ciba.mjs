// CIBA through the sidecar (spec/arop.md §11.2, oauth-transports.md §3), on oidc-provider's
// own backchannel authentication endpoint and CIBA grant.
//
// oidc-provider owns the `auth_req_id` the client sees. `triggerAuthenticationDevice`, which it
// calls once the request is stored, opens the request in the sidecar and keeps a continuation
// record: the sidecar's handle, and the client and key it is bound to. The user approves in
// AROP (OP-49: the user the hint names is the approver).
//
//   poll  each token request of the CIBA grant is a redemption at the sidecar, so the client
//         gets its `slow_down` and denial answers (oidc-provider sends none natively); on
//         approval `provider.backchannelResult` records the grant and oidc-provider's CIBA grant
//         mints the tokens, bounded by the approval.
//   ping  the sidecar pings the adapter (not the client: its handle is not the client's
//         `auth_req_id`) at `/arop/ciba-notify`; the adapter redeems and calls
//         `backchannelResult`, which pings the client. The client then redeems as above.
//   push  oidc-provider has no push mode (a client cannot register it). The sidecar's own push
//         path, which hands the AS a grant to mint and deliver, is not wired here.

import { errors } from 'oidc-provider';
import * as grantHelpers from 'oidc-provider/lib/helpers/grants.js';
import * as builtIn from 'oidc-provider/lib/actions/grants/ciba.js';
import validateDpop, { checkDpopReplay } from 'oidc-provider/lib/helpers/validate_dpop.js';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

import { provenKey } from './dpop.mjs';
import { useGrant } from './minting.mjs';
import {
  CIBA_GRANT, answer, clientOf, detailsOf, readBody, redemption, relay, resourcesOf, sameSecret, senderOf,
} from './wire.mjs';

export const NOTIFY_PATH = '/arop/ciba-notify';
const MODEL = 'AropCibaContinuation';
const MAX_NOTICE = 4096;

// The continuation records, kept with the deployment's oidc-provider adapter (the same storage
// contract as its own models), for as long as the sidecar's handle lives.
class Continuations {
  // adapter: an oidc-provider adapter class, or a factory of adapters by model name.
  constructor(adapter) {
    const isClass = /^class[\s{]/.test(Function.prototype.toString.call(adapter));
    this.store = isClass ? new adapter(MODEL) : adapter(MODEL); // eslint-disable-line new-cap
  }

  async find(authReqId) {
    const record = await this.store.find(authReqId);
    return record && record.expires_at > Date.now() / 1000 ? record : undefined;
  }

  save(authReqId, record) {
    const expiresIn = Math.max(1, record.expires_at - Math.floor(Date.now() / 1000));
    return this.store.upsert(authReqId, record, expiresIn);
  }
}

// The user's approval as an oidc-provider Grant (what its CIBA grant mints from), and the
// approved grant itself, kept on the record for the lifetime and `authorization_details` hooks.
async function recordApproval(provider, continuations, request, record, grant) {
  const approved = new provider.Grant({ accountId: request.accountId, clientId: request.clientId });
  if (grant.scope) approved.addOIDCScope(grant.scope);
  for (const resource of grant.audience) {
    approved.addResourceScope(resource, grant.scope ?? '');
  }
  await approved.save();
  record.grant = grant;
  await continuations.save(request.jti, record);
  return provider.backchannelResult(request, approved, { rar: grant.authorization_details });
}

// The sidecar's refusal as the request's result (a ping client is told it is over).
function recordRefusal(provider, request, error) {
  const ErrorClass = error === 'expired_token' ? errors.ExpiredToken : errors.AccessDenied;
  return provider.backchannelResult(request, new ErrorClass());
}

export function cibaFeature({ sidecar, userType, notifyUrl, authenticationDevice }, state) {
  async function triggerAuthenticationDevice(ctx, request, account, client) {
    const { provider, params } = ctx.oidc;
    // oidc-provider does not check DPoP at this endpoint: the handle and the token are bound to
    // the key proven here (OP-53).
    const jkt = await provenKey(provider, ctx);
    const mode = client.backchannelTokenDeliveryMode;
    const ciba = { delivery_mode: mode };
    for (const member of ['login_hint', 'login_hint_token', 'id_token_hint', 'binding_message', 'requested_expiry']) {
      if (params[member] !== undefined) ciba[member] = params[member];
    }
    if (mode === 'ping') {
      // The sidecar notifies the adapter, which the client's auth_req_id authenticates.
      ciba.notification_endpoint = notifyUrl;
      ciba.client_notification_token = request.jti;
    }
    const decide = {
      binding: 'ciba',
      grant_type: CIBA_GRANT,
      client: clientOf(client),
      subject: { type: userType, id: account.accountId },
      actor: { sub: client.clientId },
      sender: senderOf(jkt),
      scope: params.scope,
      resource: resourcesOf(params.resource),
      ciba,
    };
    const details = detailsOf(params);
    if (details !== undefined) decide.authorization_details = details;

    let decision;
    try {
      decision = await sidecar.decide(decide);
    } catch (error) {
      await request.destroy();
      throw error;
    }
    if (decision.outcome === 'allow') {
      // Policy allows it without approval; CIBA still needs the user on their device.
      if (!authenticationDevice) {
        await request.destroy();
        throw new errors.AccessDenied('no authentication device is configured for requests that need no approval');
      }
      return authenticationDevice(ctx, request, account, client);
    }
    if (decision.outcome !== 'pending') {
      await request.destroy();
      relay(ctx, decision);
      return undefined;
    }
    const expiresIn = Math.min(decision.expires_in, request.expiration);
    await state.continuations.save(request.jti, {
      handle: decision.handle,
      client_id: client.clientId,
      auth_method: client.clientAuthMethod,
      jkt: jkt ?? null,
      expires_at: Math.floor(Date.now() / 1000) + expiresIn,
    });
    // OP-51: the client polls no sooner than the sidecar's interval; oidc-provider sends none.
    ctx.body = { auth_req_id: request.jti, expires_in: expiresIn, interval: decision.interval };
    return undefined;
  }

  return {
    enabled: true,
    deliveryModes: ['poll', 'ping'],
    triggerAuthenticationDevice,
    // The sidecar checks the binding message (D-AROP-11): it allows spaces and any script,
    // where oidc-provider's default allows 20 ASCII characters.
    async validateBindingMessage() {},
    async validateRequestContext() {},
    async verifyUserCode() {},
  };
}

export function cibaGrant(provider, { sidecar }, state) {
  const boundHelpers = Object.fromEntries(
    Object.entries(grantHelpers).map(([name, helper]) => [name, helper.bind(undefined, provider)]),
  );
  const mint = builtIn.handler.bind(undefined, provider, boundHelpers);

  async function ciba(ctx) {
    const { client, params } = ctx.oidc;
    const authReqId = params.auth_req_id;
    const record = authReqId ? await state.continuations.find(authReqId) : undefined;
    if (!record || record.client_id !== client.clientId) {
      return mint(ctx); // not one of the sidecar's: oidc-provider answers it (invalid_grant)
    }
    const dPoP = await validateDpop(provider, ctx);
    const jkt = dPoP?.thumbprint ?? null;
    if (jkt !== record.jkt) {
      // OP-24, OP-64: another key is as good as an unknown handle.
      throw new errors.InvalidGrant('the auth_req_id is bound to another key');
    }
    if (!record.grant) {
      const answer = await sidecar.redeem(redemption('ciba', record.handle, client.clientId, client.clientAuthMethod, jkt));
      if (answer.outcome !== 'allow') {
        if (dPoP) await checkDpopReplay(provider, ctx, dPoP, client.clientId, errors.InvalidDpopProof);
        relay(ctx, answer);
        return undefined;
      }
      const request = await provider.BackchannelAuthenticationRequest.find(authReqId, { ignoreExpiration: true });
      if (!request) throw new errors.InvalidGrant('backchannel authentication request not found');
      await recordApproval(provider, state.continuations, request, record, answer.grant);
    }
    useGrant(ctx, record.grant);
    return mint(ctx); // checks DPoP replay, consumes the request, mints with the ID Token
  }

  provider.registerGrantType(CIBA_GRANT, ciba, ['auth_req_id']);
}

// POST /arop/ciba-notify: the sidecar's ping for a ping-mode request. Authenticated by the
// client's auth_req_id (the bearer token) naming a continuation whose sidecar handle is the one
// pinged. The adapter redeems with the client and key of the record and hands the result to
// oidc-provider, which pings the client. Always 204 once authenticated: the redemption is
// idempotent in effect, and a failed ping leaves the result stored for the client's poll.
export function cibaNotifications(provider, { sidecar, notifyPath }, state) {
  return async function notify(ctx, next) {
    if (ctx.path !== notifyPath) return next();
    if (ctx.method !== 'POST') return answer(ctx, 405, { error: 'invalid_request' });
    const bearer = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(ctx.get('authorization') ?? '')?.[1];
    const notice = await readJson(ctx);
    const record = bearer ? await state.continuations.find(bearer) : undefined;
    if (!record || !notice || !sameSecret(notice.auth_req_id, record.handle)) {
      return answer(ctx, 401, { error: 'invalid_token' });
    }
    if (!record.grant) {
      const outcome = await sidecar.redeem(redemption('ciba', record.handle, record.client_id, record.auth_method, record.jkt));
      const request = await provider.BackchannelAuthenticationRequest.find(bearer, { ignoreExpiration: true });
      try {
        if (request && outcome.outcome === 'allow') {
          await recordApproval(provider, state.continuations, request, record, outcome.grant);
        } else if (request && ['access_denied', 'expired_token'].includes(outcome.error)) {
          await recordRefusal(provider, request, outcome.error);
        }
      } catch (error) {
        // The result is stored before oidc-provider pings; a client that missed it polls.
        provider.emit('arop.ping.error', ctx, error);
      }
    }
    return answer(ctx, 204, null);
  };
}

async function readJson(ctx) {
  const body = await readBody(ctx, MAX_NOTICE);
  try {
    const value = body === undefined ? undefined : JSON.parse(body);
    return value && typeof value === 'object' ? value : undefined;
  } catch {
    return undefined;
  }
}

// Without an adapter, the records live in memory, like oidc-provider's own development default.
export function continuations(adapter = createMemoryAdapter()) {
  return new Continuations(adapter);
}
