// The token endpoint's AROP grants (spec/arop.md §11.1, oauth-transports.md §2 and §5):
//
//   client_credentials   decided by the sidecar after oidc-provider authenticated the client and
//                        before anything is minted: allowed (mint exactly the grant), refused,
//                        a client challenge, or with `completion_mode=deferred` a DTR
//                        `deferral_code`. A follow-up to a client challenge carries its
//                        `challenge_session` and evidence (the attestation headers, `mandate`).
//   urn:ietf:params:oauth:grant-type:deferred
//                        a poll of a `deferral_code`: pending, slow_down, denied, expired, or
//                        the approved grant, redeemed once.
//
// oidc-provider has verified client authentication, the parameters of the grant type and the
// `authorization_details` (its RAR feature with the sidecar's types) before these run.

import { errors } from 'oidc-provider';

import { provenKey } from './dpop.mjs';
import { mintForClient } from './minting.mjs';
import {
  DEFERRED_GRANT, clientOf, detailsOf, optedIn, redemption, relay, resourcesOf, senderOf,
} from './wire.mjs';

// The evidence a client may present with a challenge follow-up (TX-56, TX-58).
const ATTESTATION_HEADERS = [
  ['client_attestation', 'oauth-client-attestation'],
  ['client_attestation_pop', 'oauth-client-attestation-pop'],
];

export const CLIENT_CREDENTIALS_PARAMETERS = [
  'scope', 'resource', 'authorization_details', 'completion_mode', 'challenge_session', 'mandate',
];

function evidenceOf(ctx) {
  const evidence = {};
  for (const [member, header] of ATTESTATION_HEADERS) {
    const value = ctx.get(header);
    if (value) evidence[member] = value;
  }
  if (ctx.oidc.params.mandate !== undefined) evidence.mandate = ctx.oidc.params.mandate;
  return Object.keys(evidence).length ? evidence : undefined;
}

export function tokenEndpointGrants(provider, { sidecar, resourceServerFor, agentType }) {
  async function clientCredentials(ctx) {
    const { client, params } = ctx.oidc;
    const jkt = await provenKey(provider, ctx);
    const request = {
      binding: optedIn(params.completion_mode) ? 'dtr' : 'token',
      grant_type: 'client_credentials',
      client: clientOf(client),
      // spec/arop.md §10: the principal of a client_credentials grant is the client itself.
      subject: { type: agentType, id: client.clientId },
      sender: senderOf(jkt),
      resource: resourcesOf(params.resource),
    };
    for (const member of ['scope', 'completion_mode', 'challenge_session']) {
      if (params[member] !== undefined) request[member] = params[member];
    }
    const details = detailsOf(params);
    if (details !== undefined) request.authorization_details = details;
    const evidence = evidenceOf(ctx);
    if (evidence !== undefined) request.evidence = evidence;

    const answer = await sidecar.decide(request);
    if (answer.outcome !== 'allow') {
      relay(ctx, answer);
      return;
    }
    ctx.body = await mintForClient(provider, resourceServerFor, client, answer.grant, jkt);
  }

  async function deferred(ctx) {
    const { client, params } = ctx.oidc;
    if (!params.deferral_code) {
      throw new errors.InvalidRequest("missing required parameter 'deferral_code'");
    }
    const jkt = await provenKey(provider, ctx);
    const answer = await sidecar.redeem(redemption('dtr', params.deferral_code, client.clientId, client.clientAuthMethod, jkt));
    if (answer.outcome !== 'allow') {
      relay(ctx, answer);
      return;
    }
    ctx.body = await mintForClient(provider, resourceServerFor, client, answer.grant, jkt);
  }

  provider.registerGrantType('client_credentials', clientCredentials, CLIENT_CREDENTIALS_PARAMETERS, ['resource']);
  provider.registerGrantType(DEFERRED_GRANT, deferred, ['deferral_code']);
}
