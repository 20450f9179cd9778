"""An evidence type from outside the core, through the extension point (issue 5, TX-56): a
broker licence, a JWT (`typ` licence+jwt) a regulator signs for one client: `iss` the regulator,
`sub` the client id, `aud` this AS, `exp`, `jti`, `cnf.jkt` the client's DPoP key, and
`licensed_up_to`, the largest trade it may make. The client sends it as the `vp_token` token
request parameter with `nonce` = the `challenge_session`, so that it answers this challenge only.

Configured as
    [[oauth.client_challenge.verifiers]]
    type = "broker_licence"
    factory = "tests.oauth.licence_verifier:BrokerLicenceVerifier"
    issuers = [{ issuer = "https://regulator.example", jwks = { keys = [...] } }]
"""

from __future__ import annotations

from profiles.arap.model import JSONObject
from profiles.arap.signed import KeyResolver
from profiles.client_challenge.evidence import (
    EvidenceContext,
    EvidenceInput,
    VerifiedEvidence,
    check_answers_challenge,
    check_key_binding,
    expiry,
    policy_claims,
    refused,
    verified_claims,
)

TYPE = "broker_licence"
TYP = "licence+jwt"


class BrokerLicenceVerifier:
    type = TYPE

    def __init__(self, resolve_key: KeyResolver, *, parameter: str = "vp_token") -> None:
        self.resolve_key = resolve_key
        self.parameter = parameter

    def requirement(self) -> JSONObject:
        return {"credential_types": [TYP], "parameter": self.parameter}

    def verify(self, supplied: EvidenceInput, context: EvidenceContext) -> VerifiedEvidence:
        token = supplied.parameters.get(self.parameter)
        if not token:
            raise refused(f"broker_licence: send the licence as {self.parameter}")
        claims = verified_claims(token, "broker_licence", resolve_key=self.resolve_key, audience=context.audience, typ=TYP)
        expires_at = expiry(claims, context, "broker_licence")
        if claims.get("sub") != context.client_id or not isinstance(claims.get("jti"), str):
            raise refused("broker_licence: the licence is another client's")
        check_answers_challenge(claims.get("nonce"), context, "broker_licence: the licence")
        check_key_binding(claims, context, "broker_licence: the licence")
        return VerifiedEvidence(
            type=TYPE, issuer=str(claims["iss"]), claims=policy_claims(claims, iss=claims["iss"]), expires_at=expires_at,
            jti=claims["jti"], remember_until=expires_at + context.skew,
        )
