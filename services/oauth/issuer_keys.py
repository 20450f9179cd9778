"""Verification keys of the issuers whose signed artifacts the sidecar accepts: the resource
servers' transaction challenges (spec/arop.md OP-57, OP-78; oauth-transports.md TX-33, TX-34,
TX-42) and the attesters and mandate issuers of client evidence (TX-56, issue 5).

Only configured issuers are recognized: a token from any other `iss` has no key, whatever it
claims. Each one's keys are configured inline or fetched from its `jwks_uri` through
services.jwks (https only, TLS verified, no redirects), cached for the document's
`Cache-Control: max-age` within bounds, and fetched again once when a token names a `kid` the
cache does not hold (key rotation), at most once per `min_refresh` so that forged `kid`s cannot
make us hammer the issuer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from profiles.arap.signed import peek
from services.jwks import JwksCache

if TYPE_CHECKING:
    from joserfc.jwk import Key


class TrustedIssuer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A recognized issuer: its identifier (the tokens' `iss`; for a resource server also the
    token audience, TX-45) and where its keys come from: an inline JWK Set, or its `jwks_uri`
    (a resource server's `txn_challenge_jwks_uri`)."""

    issuer: str
    jwks_uri: str = ""
    jwks: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if bool(self.jwks_uri) == (self.jwks is not None):
            raise ValueError(f"issuer {self.issuer!r}: give exactly one of jwks_uri and jwks")
        if self.jwks_uri and not self.jwks_uri.startswith("https://"):
            raise ValueError(f"issuer {self.issuer!r}: jwks_uri must be https")


class IssuerKeys:
    def __init__(self, issuers: Sequence[TrustedIssuer], **cache_options: Any) -> None:
        """One JwksCache per issuer; `cache_options` are JwksCache's (ca_file, timeout, min_age,
        max_age, min_refresh), the same for every issuer."""
        self._keys = {issuer.issuer: JwksCache(issuer.jwks_uri, jwks=issuer.jwks, **cache_options) for issuer in issuers}

    def __contains__(self, issuer: object) -> bool:
        return issuer in self._keys

    async def load(self, *tokens: object) -> None:
        """Before verifying `tokens` with `resolve`, which cannot wait: the keys of the issuers
        their unverified `iss` names are loaded, or refreshed for an unknown `kid`. Anything
        that is not a JWS of a recognized issuer loads nothing."""
        for token in tokens:
            issuer, kid = peek(token)
            if issuer is not None and issuer in self._keys:
                await self._keys[issuer].ensure(kid)

    def resolve(self, iss: str | None, kid: str | None) -> Key | None:
        """`(iss, kid) -> key` (profiles.arap.signed.KeyResolver) over what `load` fetched."""
        keys = self._keys.get(iss) if iss is not None else None
        # TX-32: with several keys, a token without `kid` must say which (JwksCache.key).
        return keys.key(kid) if keys is not None else None
