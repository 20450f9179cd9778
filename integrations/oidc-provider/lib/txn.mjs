// The transaction authorization endpoint (oauth-transports.md §4, TX-37..TX-40; spec/arop.md
// §11.3). oidc-provider has no such endpoint, so the adapter serves it beside oidc-provider's
// router and advertises it in discovery (`transaction_authorization_endpoint`).
//
//   transaction_challenge=<the RS-signed challenge>   → the sidecar verifies it and opens the
//                                                       request: 200 {transaction_authorization_id, expires_in, interval}
//   transaction_authorization_id=<that id>            → a poll: pending, slow_down, denied,
//                                                       expired, or the `txn`-bound token
//
// Outside oidc-provider's router the adapter authenticates the client itself, with the methods
// of a client secret (client_secret_basic, client_secret_post), and verifies the DPoP proof by
// RFC 9449 §4.3 with oidc-provider's replay store.

import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose';
import { errors } from 'oidc-provider';

import { mintForClient } from './minting.mjs';
import { answer, clientOf, readBody, redemption, sameSecret, senderOf, wireAnswer } from './wire.mjs';

export const TXN_PATH = '/txn';
const MAX_FORM = 64 * 1024;
const IAT_WINDOW = 300; // seconds, oidc-provider's own DPoP window
const DPOP_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'];
const SECRET_METHODS = new Set(['client_secret_basic', 'client_secret_post']);

class Refused extends Error {
  constructor(status, error, description) {
    super(error);
    this.status = status;
    this.body = { error, ...(description ? { error_description: description } : {}) };
  }
}

async function readForm(ctx) {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    throw new Refused(400, 'invalid_request', 'the request body must be application/x-www-form-urlencoded');
  }
  const body = await readBody(ctx, MAX_FORM);
  if (body === undefined) throw new Refused(413, 'invalid_request', 'the request body is too large');
  const params = new URLSearchParams(body);
  const form = {};
  for (const [name, value] of params) {
    if (name in form) throw new Refused(400, 'invalid_request', `'${name}' parameter must not be provided twice`);
    form[name] = value;
  }
  return form;
}

// RFC 6749 §2.3.1: the client secret in HTTP Basic (form-urlencoded id and secret) or the body.
async function authenticate(provider, ctx, form) {
  let clientId = form.client_id;
  let secret = form.client_secret;
  const basic = /^Basic ([A-Za-z0-9+/]+=*)$/i.exec(ctx.get('authorization') ?? '');
  if (basic) {
    if (secret !== undefined) throw new Refused(400, 'invalid_request', 'one client authentication method only');
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new Refused(401, 'invalid_client');
    let id;
    try {
      id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
      secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
    } catch {
      throw new Refused(401, 'invalid_client', 'malformed HTTP Basic credentials');
    }
    if (clientId !== undefined && clientId !== id) throw new Refused(400, 'invalid_request', 'client_id does not match the authorization header');
    clientId = id;
  }
  const client = clientId ? await provider.Client.find(clientId) : undefined;
  if (!client || !SECRET_METHODS.has(client.clientAuthMethod) || !client.clientSecret || !sameSecret(secret, client.clientSecret)) {
    throw new Refused(401, 'invalid_client', 'client authentication failed');
  }
  return client;
}

// RFC 9449 §4.3: exactly one proof, typ dpop+jwt, an asymmetric algorithm, the signature by its
// own header key, htm and htu of this request, a recent iat, and a jti not seen before.
async function provenKey(provider, ctx, client, htu) {
  const proofs = ctx.req.headers.dpop;
  if (proofs === undefined) {
    if (client.dpopBoundAccessTokens) throw new Refused(400, 'invalid_dpop_proof', 'DPoP proof JWT not provided');
    return undefined;
  }
  if (typeof proofs !== 'string' || proofs.includes(',')) throw new Refused(400, 'invalid_dpop_proof', 'one DPoP proof');
  let payload;
  let protectedHeader;
  try {
    ({ payload, protectedHeader } = await jwtVerify(proofs, EmbeddedJWK, { algorithms: DPOP_ALGORITHMS, typ: 'dpop+jwt' }));
  } catch {
    throw new Refused(400, 'invalid_dpop_proof', 'invalid DPoP proof JWT');
  }
  const now = Math.floor(Date.now() / 1000);
  const target = URL.parse(typeof payload.htu === 'string' ? payload.htu : '');
  if (target) {
    target.search = '';
    target.hash = '';
  }
  if (payload.htm !== 'POST' || target?.href !== htu || typeof payload.iat !== 'number'
      || Math.abs(now - payload.iat) > IAT_WINDOW || typeof payload.jti !== 'string' || !payload.jti) {
    throw new Refused(400, 'invalid_dpop_proof', 'DPoP proof htm, htu, iat or jti mismatch');
  }
  const unique = await provider.ReplayDetection.unique(client.clientId, payload.jti, now + IAT_WINDOW);
  if (!unique) throw new Refused(400, 'invalid_dpop_proof', 'DPoP proof JWT replay detected');
  return calculateJwkThumbprint(protectedHeader.jwk, 'sha256');
}

export function transactionEndpoint(provider, { sidecar, resourceServerFor, agentType, txnPath }) {
  const htu = new URL(txnPath, provider.issuer.endsWith('/') ? provider.issuer : `${provider.issuer}/`).href;

  async function serve(ctx) {
    const form = await readForm(ctx);
    const client = await authenticate(provider, ctx, form);
    const jkt = await provenKey(provider, ctx, client, htu);
    const hasChallenge = form.transaction_challenge !== undefined;
    const hasId = form.transaction_authorization_id !== undefined;
    if (hasChallenge === hasId) {
      throw new Refused(400, 'invalid_request', 'send either transaction_challenge or transaction_authorization_id');
    }
    const outcome = hasChallenge
      ? await sidecar.decide({
        binding: 'txn',
        grant_type: 'client_credentials',
        client: clientOf(client),
        subject: { type: agentType, id: client.clientId },
        sender: senderOf(jkt),
        transaction_challenge: form.transaction_challenge,
      })
      : await sidecar.redeem(redemption('txn', form.transaction_authorization_id, client.clientId, client.clientAuthMethod, jkt));
    if (outcome.outcome === 'allow') {
      // TX-45, OP-59: `txn`, the RS as audience, the challenge's details, no refresh token.
      return answer(ctx, 200, await mintForClient(provider, resourceServerFor, client, outcome.grant, jkt));
    }
    const { status, body } = wireAnswer(outcome);
    return answer(ctx, status, body);
  }

  return async function transactionAuthorization(ctx, next) {
    if (ctx.path !== txnPath) return next();
    if (ctx.method !== 'POST') return answer(ctx, 405, { error: 'invalid_request', error_description: 'POST only' });
    try {
      return await serve(ctx);
    } catch (error) {
      if (error instanceof Refused) {
        if (error.status === 401) ctx.set('www-authenticate', 'Basic realm="txn"');
        return answer(ctx, error.status, error.body);
      }
      if (error instanceof errors.OIDCProviderError) {
        return answer(ctx, error.statusCode, { error: error.error, ...(error.error_description ? { error_description: error.error_description } : {}) });
      }
      throw error;
    }
  };
}
