"""Client evidence for the OAuth Client Challenge Protocol (oauth-transports.md §5, TX-50, TX-56):
what a client supplies in its follow-up, what a verifier makes of it, and the registry that maps
a requirement `type` to its verifier.

A requirement type is a profile of the base draft (TX-56: it says how the client supplies the
input). Each verifier here is one such profile; a new type is a new `EvidenceVerifier` registered
under its name, with no change to the challenge rules (`profiles.client_challenge.challenge`) or
the sidecar. Verified evidence reaches policies as `context.client_evidence` (DESIGN §3): its
`type` and `claims`. The checks verifiers share, built-in or not, are here too: a signed token
(`verified_claims`), its life (`expiry`), its answer to this session (`check_answers_challenge`)
and its binding to the presenting key (`check_key_binding`), each refusing with
`unauthorized_client` (TX-57).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec

from profiles.arap.model import JSONObject
from profiles.arap.signed import UnverifiedToken, lifetime, verify_jwt
from profiles.arop.dedup import sender_of
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


def verified_claims(token: str, what: str, **options: Any) -> JSONObject:
    """The claims of a JWS `token` that verifies (`profiles.arap.signed.verify_jwt` with
    `options`, asymmetric algorithms only), or refused naming `what` failed."""
    try:
        return verify_jwt(token, algorithms=ASYMMETRIC, **options).claims
    except UnverifiedToken as exc:
        raise refused(f"{what}: {exc.detail}") from None


def expiry(claims: JSONObject, context: EvidenceContext, what: str) -> datetime:
    """The token's `exp`, once it is alive (RFC 7519 with the allowed skew), or refused."""
    try:
        return lifetime(claims, now=context.now, skew=context.skew)[1]
    except ValueError as exc:
        raise refused(f"{what} {exc}") from None


def check_answers_challenge(value: object, context: EvidenceContext, what: str) -> None:
    """TX-51: `value` (a proof's `challenge`, a credential's `nonce`) is this session's value,
    so the evidence answers this challenge and no other."""
    if not isinstance(value, str) or not hmac.compare_digest(value.encode(), context.challenge.encode()):
        raise refused(f"{what} does not answer this challenge")


def check_key_binding(claims: JSONObject, context: EvidenceContext, what: str) -> None:
    """TX-61: `cnf.jkt` names the DPoP key the request proved, so only its holder presents it."""
    cnf = claims.get("cnf")
    bound = cnf.get("jkt") if isinstance(cnf, dict) else None
    presented = sender_of(context.key_thumbprint).dpop_jkt
    if not isinstance(bound, str) or presented is None or not hmac.compare_digest(bound.encode(), presented.encode()):
        raise refused(f"{what} is bound to another key")


def policy_claims(claims: JSONObject, **named: object) -> JSONObject:
    """The claims a policy sees: the token's own (not the registered ones) plus `named`."""
    return {**{k: v for k, v in claims.items() if k not in REGISTERED}, **named}


def registry(verifiers: Mapping[str, EvidenceVerifier]) -> dict[str, EvidenceVerifier]:
    """Verifiers by type; each must be registered under its own type."""
    for name, verifier in verifiers.items():
        if verifier.type != name:
            raise ValueError(f"verifier for {verifier.type!r} registered as {name!r}")
    return dict(verifiers)
