"""`client_attestation`: attestation-based client authentication as a challenge answer
(draft-ietf-oauth-attestation-based-client-auth; issue 5).

The client answers with two JWTs, as that draft's headers carry them:
- the Client Attestation (`typ` oauth-client-attestation+jwt), signed by an attester this AS
  trusts: `iss` the attester, `sub` the client id, `exp`, and `cnf.jwk` the client instance's key;
- the Client Attestation PoP (`typ` oauth-client-attestation-pop+jwt), signed with that key:
  `iss` the client id, `aud` this AS, a fresh `iat`, a `jti`, and `challenge` = the
  `challenge_session` value, so the proof answers this challenge and no other (TX-51, TX-61).
Policies see the attester as `iss` and the attestation's own claims (e.g. a software statement).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from profiles.arap.model import JSONObject
from profiles.arap.signed import KeyResolver, numeric_date
from profiles.client_challenge.evidence import (
    EvidenceContext,
    EvidenceInput,
    VerifiedEvidence,
    check_answers_challenge,
    expiry,
    policy_claims,
    refused,
    verified_claims,
)

TYPE = "client_attestation"
ATTESTATION_TYP = "oauth-client-attestation+jwt"
POP_TYP = "oauth-client-attestation-pop+jwt"


class ClientAttestationVerifier:
    """`attesters` resolves (`iss`, `kid`) to a trusted attester key; a PoP older than
    `max_pop_age` is stale."""

    type = TYPE

    def __init__(self, attesters: KeyResolver, *, max_pop_age: timedelta = timedelta(minutes=5)) -> None:
        self.attesters = attesters
        self.max_pop_age = max_pop_age

    def requirement(self) -> JSONObject:
        return {"attestation_types": [ATTESTATION_TYP], "pop_types": [POP_TYP]}

    def verify(self, supplied: EvidenceInput, context: EvidenceContext) -> VerifiedEvidence:
        if not supplied.client_attestation or not supplied.client_attestation_pop:
            raise refused("client_attestation needs the attestation and its proof of possession")
        claims = verified_claims(supplied.client_attestation, "client attestation", resolve_key=self.attesters, audience=None, typ=ATTESTATION_TYP)
        if claims.get("sub") != context.client_id:
            raise refused("the client attestation is for another client")
        expires_at = expiry(claims, context, "client attestation")
        instance_key = _confirmation_key(claims)
        proof = verified_claims(
            supplied.client_attestation_pop, "attestation proof", resolve_key=lambda _iss, _kid: instance_key,
            audience=context.audience, typ=POP_TYP,
        )
        if proof.get("iss") != context.client_id:
            raise refused("the attestation proof is not the client's")
        check_answers_challenge(proof.get("challenge"), context, "the attestation proof")
        jti = proof.get("jti")
        if not isinstance(jti, str) or not jti:
            raise refused("the attestation proof needs a jti")
        try:
            issued_at = numeric_date(proof, "iat")
        except ValueError:
            issued_at = None
        if issued_at is None or issued_at > context.now + context.skew or issued_at < context.now - self.max_pop_age - context.skew:
            raise refused("the attestation proof is not fresh")
        return VerifiedEvidence(
            type=TYPE,
            issuer=str(claims["iss"]),
            claims=policy_claims(claims, iss=claims["iss"], sub=context.client_id),
            expires_at=expires_at,
            jti=f"{context.client_id}\0{jti}",
            remember_until=issued_at + self.max_pop_age + context.skew,
        )


def _confirmation_key(claims: JSONObject) -> Any:
    """The client instance's public key from `cnf.jwk` (RFC 7800); private members refused."""
    from joserfc.errors import JoseError
    from joserfc.jwk import JWKRegistry

    cnf = claims.get("cnf")
    jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
    if not isinstance(jwk, dict) or any(member in jwk for member in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise refused("the client attestation needs cnf.jwk, a public key")
    try:
        return JWKRegistry.import_key(jwk)
    except (JoseError, ValueError, TypeError):
        raise refused("the client attestation's cnf.jwk is not a usable key") from None
