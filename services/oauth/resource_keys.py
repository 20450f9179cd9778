"""Verification keys of the resource servers whose transaction challenges this AS accepts
(spec/arop.md OP-57, OP-78; oauth-transports.md TX-33, TX-34, TX-42).

Only configured resource servers are recognized: a challenge from any other `iss` has no key,
whatever it claims. Each one's keys are configured inline or fetched from its
`txn_challenge_jwks_uri` through services.jwks (https only, TLS verified, no redirects), cached
for the document's `Cache-Control: max-age` within bounds, and fetched again once when a
challenge names a `kid` the cache does not hold (key rotation), at most once per `min_refresh`
so that forged `kid`s cannot make us hammer the RS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from profiles.arap.signed import peek
from profiles.arop.txn_challenge import KeyResolver
from services.jwks import JwksCache

if TYPE_CHECKING:
    from joserfc.jwk import Key


class ResourceServer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A recognized RS: its identifier (the challenge `iss`, and the token audience, TX-45)
    and where its challenge keys come from: an inline JWK Set, or its `txn_challenge_jwks_uri`."""

    issuer: str
    jwks_uri: str = ""
    jwks: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if bool(self.jwks_uri) == (self.jwks is not None):
            raise ValueError(f"resource server {self.issuer!r}: give exactly one of jwks_uri and jwks")
        if self.jwks_uri and not self.jwks_uri.startswith("https://"):
            raise ValueError(f"resource server {self.issuer!r}: jwks_uri must be https")


class ResourceServerKeys:
    def __init__(self, servers: Sequence[ResourceServer], **cache_options: Any) -> None:
        """One JwksCache per RS; `cache_options` are JwksCache's (ca_file, timeout, min_age,
        max_age, min_refresh), the same for every RS."""
        self._keys = {server.issuer: JwksCache(server.jwks_uri, jwks=server.jwks, **cache_options) for server in servers}

    async def resolver(self, token: object) -> KeyResolver:
        """A `(iss, kid) -> key` resolver for verifying `token` (profiles.arop.txn_challenge):
        the keys of the RS the token's unverified `iss` names are loaded (or refreshed for an
        unknown `kid`) first, since the resolver itself cannot wait."""
        issuer, kid = peek(token)
        if issuer is not None and issuer in self._keys:
            await self._keys[issuer].ensure(kid)

        def resolve(iss: str, kid: str | None) -> Key | None:
            keys = self._keys.get(iss)
            # TX-32: with several keys, a challenge without `kid` must say which (JwksCache.key).
            return keys.key(kid) if keys is not None else None

        return resolve
