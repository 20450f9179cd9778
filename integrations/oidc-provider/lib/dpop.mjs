// DPoP (RFC 9449) at oidc-provider's own endpoints (token, backchannel authentication): its own
// proof verification, plus the replay check and the client's `dpop_bound_access_tokens`.

import { errors } from 'oidc-provider';
import validateDpop, { checkDpopReplay } from 'oidc-provider/lib/helpers/validate_dpop.js';

// The DPoP proof oidc-provider verified for this request (RFC 9449 §4.3: typ, alg, signature,
// htm, htu, iat), checked once against replay for this client; its key's thumbprint.
export async function provenKey(provider, ctx) {
  const dPoP = await validateDpop(provider, ctx);
  if (!dPoP) {
    if (ctx.oidc.client.dpopBoundAccessTokens) {
      throw new errors.InvalidDpopProof('DPoP proof JWT not provided');
    }
    return undefined;
  }
  await checkDpopReplay(provider, ctx, dPoP, ctx.oidc.client.clientId, errors.InvalidDpopProof);
  return dPoP.thumbprint;
}
