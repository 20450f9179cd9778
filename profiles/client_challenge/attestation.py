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

import hmac
from datetime import datetime, timedelta
from typing import Any

from profiles.arap.model import JSONObject
from profiles.arap.signed import KeyResolver, UnverifiedToken, lifetime, numeric_date, verify_jwt
from profiles.client_challenge.evidence import (
    ASYMMETRIC,
    EvidenceContext,
    EvidenceInput,
    VerifiedEvidence,
    policy_claims,
    refused,
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
        attestation = _verified(supplied.client_attestation, "client attestation", resolve_key=self.attesters, audience=None, typ=ATTESTATION_TYP)
        claims = attestation.claims
        if claims.get("sub") != context.client_id:
            raise refused("the client attestation is for another client")
        expires_at = _alive(claims, context, "client attestation")
        instance_key = _confirmation_key(claims)
        pop = _verified(
            supplied.client_attestation_pop, "attestation proof", resolve_key=lambda _iss, _kid: instance_key,
            audience=context.audience, typ=POP_TYP,
        )
        proof = pop.claims
        if proof.get("iss") != context.client_id:
            raise refused("the attestation proof is not the client's")
        challenge = proof.get("challenge")
        if not isinstance(challenge, str) or not hmac.compare_digest(challenge.encode(), context.challenge.encode()):
            raise refused("the attestation proof does not answer this challenge")
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


def _verified(token: str, what: str, **options: Any) -> Any:
    try:
        return verify_jwt(token, algorithms=ASYMMETRIC, **options)
    except UnverifiedToken as exc:
        raise refused(f"{what}: {exc.detail}") from None


def _alive(claims: JSONObject, context: EvidenceContext, what: str) -> datetime:
    """The token's `exp`, once it is alive (RFC 7519 with the allowed skew)."""
    try:
        return lifetime(claims, now=context.now, skew=context.skew)[1]
    except ValueError as exc:
        raise refused(f"{what} {exc}") from None


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
