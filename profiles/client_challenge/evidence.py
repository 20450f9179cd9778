"""Client evidence for the OAuth Client Challenge Protocol (oauth-transports.md §5, TX-50, TX-56):
what a client supplies in its follow-up, what a verifier makes of it, and the registry that maps
a requirement `type` to its verifier.

A requirement type is a profile of the base draft (TX-56: it says how the client supplies the
input). Each verifier here is one such profile; a new type is a new `EvidenceVerifier` registered
under its name, with no change to the challenge rules (`profiles.client_challenge.challenge`) or
the sidecar. Verified evidence reaches policies as `context.client_evidence` (DESIGN §3): its
`type` and `claims`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from profiles.arap.model import JSONObject
from profiles.arop.errors import UNAUTHORIZED_CLIENT, OAuthFailure
from profiles.arop.model import EvidenceInput

# JWS algorithms accepted for evidence: asymmetric only, never `none` or a MAC (a verification key
# must never double as a signing secret).
ASYMMETRIC = ("ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512")
# Registered JWT claims and confirmation members: policies see the others.
REGISTERED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "cnf"})


class EvidenceContext(msgspec.Struct, frozen=True):
    """What evidence is checked against: the client the AS authenticated, this AS (`audience`),
    the session value (the challenge's nonce, TX-51), the key the follow-up proved (its
    thumbprint: `jkt:<…>` or `x5t#S256:<…>`, empty for none), the time and the allowed skew."""

    client_id: str
    audience: str
    challenge: str
    key_thumbprint: str
    now: datetime
    skew: timedelta


class VerifiedEvidence(msgspec.Struct, frozen=True):
    """Evidence a verifier accepted: its type and the claims policies see, who vouched for it
    (`issuer`), until when it holds (`expires_at`: a token granted on it lives no longer), and
    the `jti` to remember until `remember_until` so it is accepted once (None: evidence meant to
    be presented again, bound to the client's key instead)."""

    type: str
    issuer: str
    claims: JSONObject
    expires_at: datetime
    jti: str | None
    remember_until: datetime

    def policy_input(self) -> JSONObject:
        """`context.client_evidence` (DESIGN §3): the type and the verified claims."""
        return {"type": self.type, "claims": self.claims}


class EvidenceVerifier(Protocol):
    """One requirement type (TX-56)."""

    type: str

    def requirement(self) -> JSONObject:
        """The members of `authorization_requirement` besides `type` (TX-50)."""

    def verify(self, supplied: EvidenceInput, context: EvidenceContext) -> VerifiedEvidence:
        """Verified evidence, or OAuthFailure(unauthorized_client) (TX-57)."""


def refused(detail: str) -> OAuthFailure:
    """TX-57: input the AS judges invalid, with no other way to resolve the challenge."""
    return OAuthFailure(UNAUTHORIZED_CLIENT, detail)


def policy_claims(claims: JSONObject, **named: object) -> JSONObject:
    """The claims a policy sees: the token's own (not the registered ones) plus `named`."""
    return {**{k: v for k, v in claims.items() if k not in REGISTERED}, **named}


def registry(verifiers: Mapping[str, EvidenceVerifier]) -> dict[str, EvidenceVerifier]:
    """Verifiers by type; each must be registered under its own type."""
    for name, verifier in verifiers.items():
        if verifier.type != name:
            raise ValueError(f"verifier for {verifier.type!r} registered as {name!r}")
    return dict(verifiers)
