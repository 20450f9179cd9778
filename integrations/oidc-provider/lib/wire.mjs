// What the adapter sends the sidecar, and how the sidecar's answers reach the client.
//
// oidc-provider renders every error as `{error, error_description}`. The sidecar's answers carry
// more (a DTR `deferral_code`, `expires_in` and `interval`; the Client Challenge's
// `authorization_requirement` and `challenge_session`; the remediation member), and a pending
// CIBA or transaction answer is a 200. So a handler that has a sidecar answer to relay records it
// on the request and throws the matching oidc-provider error (events and logs stay right);
// `relayAnswers`, mounted in front of oidc-provider's router, then puts the exact status and
// body on the wire.

import { createHash, timingSafeEqual } from 'node:crypto';

import { errors } from 'oidc-provider';

const RELAYED = Symbol('arop relayed answer');
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' };

// The extension of every form-encoded OAuth request the DTR opt-in is read from.
export const DEFERRED = 'deferred';
export const DEFERRED_GRANT = 'urn:ietf:params:oauth:grant-type:deferred';
export const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';

// DTR: `completion_mode` is a space-separated list; the client opts in by listing `deferred`.
export function optedIn(completionMode) {
  return typeof completionMode === 'string' && completionMode.split(' ').includes(DEFERRED);
}

// The client as oidc-provider authenticated it (OP-62), and whether it registered that it
// understands the Client Challenge (TX-59).
export function clientOf(client) {
  const authMethod = client.clientAuthMethod;
  return {
    id: client.clientId,
    auth_method: authMethod,
    public: authMethod === 'none',
    insufficient_client_authorization_supported: client.insufficient_client_authorization_supported === true,
  };
}

// The key the AS verified possession of (OP-61): the DPoP key's RFC 7638 thumbprint.
export function senderOf(jkt) {
  return jkt ? { dpop_jkt: jkt } : {};
}

// A poll or redemption of a continuation handle, by the client, method and key the AS verified
// now (OP-24, OP-62): the sidecar compares them with those the handle is bound to.
export function redemption(binding, handle, clientId, authMethod, jkt) {
  return { binding, handle, client_id: clientId, auth_method: authMethod, sender: senderOf(jkt) };
}

// RFC 8707 `resource` as oidc-provider parsed it: absent, one string, or several.
export function resourcesOf(resource) {
  if (resource === undefined) return [];
  return Array.isArray(resource) ? resource : [resource];
}

// `authorization_details` as oidc-provider's checkRar already validated it (RFC 9396).
export function detailsOf(params) {
  return params.authorization_details === undefined ? undefined : JSON.parse(params.authorization_details);
}

// Seconds from now until an RFC 3339 instant, rounded down: a token whose `iat` is this second
// and whose lifetime is this many seconds never outlives the instant (OP-34).
export function secondsUntil(instant) {
  return Math.floor((Date.parse(instant) - Date.now()) / 1000);
}

export function sameSecret(a, b) {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const digest = (value) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(a), digest(b));
}

// An OAuth error for the answer at hand, for oidc-provider's own error handling.
function errorFor(status, body) {
  const error = new errors.CustomOIDCProviderError(body.error ?? 'server_error', body.error_description);
  error.status = status;
  error.statusCode = status;
  error.expose = status < 500;
  return error;
}

// A sidecar answer that is not `allow`, as it goes on the wire: `pending` as its `response`, an
// error, remediation or client challenge as its status with every other member as the body.
export function wireAnswer(sidecarAnswer) {
  if (sidecarAnswer.outcome === 'pending') return sidecarAnswer.response;
  const { outcome, status, ...body } = sidecarAnswer;
  return { status, body };
}

// Relay such an answer from inside oidc-provider's router.
export function relay(ctx, sidecarAnswer) {
  const { status, body } = wireAnswer(sidecarAnswer);
  ctx.state[RELAYED] = { status, body };
  if (status === 200) {
    // A pending CIBA or transaction answer: a success, answered as is.
    ctx.status = 200;
    ctx.body = body;
    ctx.set(NO_STORE);
    return;
  }
  throw errorFor(status, body);
}

// Mounted with provider.use: after oidc-provider (and its error handler) ran, a relayed answer
// replaces what it rendered.
export async function relayAnswers(ctx, next) {
  await next();
  const relayed = ctx.state[RELAYED];
  if (relayed !== undefined) {
    ctx.status = relayed.status;
    ctx.body = relayed.body;
    ctx.set(NO_STORE);
  }
}

// The body of a request to one of the adapter's own endpoints, or undefined past `limit` bytes
// (nothing parses an unbounded body).
export async function readBody(ctx, limit) {
  let length = 0;
  const chunks = [];
  for await (const chunk of ctx.req) {
    length += chunk.length;
    if (length > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// An answer to one of the adapter's own endpoints (outside oidc-provider's router).
export function answer(ctx, status, body) {
  ctx.status = status;
  ctx.body = body;
  ctx.set(NO_STORE);
}
