"""`mandate`: a user-signed mandate as a challenge answer (issue 5; the trading agent of the
seeds: "buy up to this amount for me").

The client sends the mandate as the `mandate` token request parameter of its follow-up. It is a
JWT (`typ` mandate+jwt) signed by an issuer this AS trusts for its users (the user's wallet or
IdP key): `iss`, `sub` the user, `aud` this AS, `client_id` the agent it empowers, `exp`, `jti`,
and `cnf.jkt` the agent's DPoP key, so that only that agent can present it. Its other claims are
the constraints (e.g. `actions`, `max_amount`, `resources`); policies bound the grant by them
through `context.client_evidence.claims` (DESIGN §3). The user is also given as an entity,
`claims.user` (type `user_type`, id `sub`), so that a policy can require the mandate to come from
the user whose resource is at stake (`claims.user == resource.owner`): a trusted issuer signs
for many users, and any one user's mandate must not empower an agent over another's. A mandate may be presented again while it
lives, always by the key it names: its reuse is what its constraints allow, per request.
"""

from __future__ import annotations

from profiles.arap.model import JSONObject
from profiles.arap.signed import KeyResolver
from profiles.client_challenge.evidence import (
    EvidenceContext,
    EvidenceInput,
    VerifiedEvidence,
    check_key_binding,
    expiry,
    policy_claims,
    refused,
    verified_claims,
)

TYPE = "mandate"
TYP = "mandate+jwt"


class MandateVerifier:
    """`issuers` resolves (`iss`, `kid`) to a key trusted to sign users' mandates; `user_type`
    is the entity type of the users they sign for."""

    type = TYPE

    def __init__(self, issuers: KeyResolver, *, user_type: str = "User") -> None:
        self.issuers = issuers
        self.user_type = user_type

    def requirement(self) -> JSONObject:
        return {"mandate_types": [TYP], "parameter": "mandate"}

    def verify(self, supplied: EvidenceInput, context: EvidenceContext) -> VerifiedEvidence:
        if not supplied.mandate:
            raise refused("mandate: send the user's mandate as the mandate parameter")
        claims = verified_claims(supplied.mandate, "mandate", resolve_key=self.issuers, audience=context.audience, typ=TYP)
        expires_at = expiry(claims, context, "mandate")
        if claims.get("client_id") != context.client_id:
            raise refused("the mandate empowers another client")
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("jti"), str):
            raise refused("the mandate needs sub and jti")
        check_key_binding(claims, context, "the mandate")
        return VerifiedEvidence(
            type=TYPE,
            issuer=str(claims["iss"]),
            claims=policy_claims(claims, iss=claims["iss"], sub=claims["sub"], user={"__entity": {"type": self.user_type, "id": claims["sub"]}}),
            expires_at=expires_at,
            jti=None,
            remember_until=expires_at + context.skew,
        )
