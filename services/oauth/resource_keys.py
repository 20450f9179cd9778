"""Verification keys of the resource servers whose transaction challenges this AS accepts
(spec/arop.md OP-57, OP-78; oauth-transports.md TX-33, TX-34, TX-42).

Only configured resource servers are recognized: a challenge from any other `iss` has no key,
whatever it claims. Each one's keys are configured inline or fetched from its
`txn_challenge_jwks_uri` (https only, TLS verified, no redirects), cached for the document's
`Cache-Control: max-age` within bounds, and fetched again once when a challenge names a `kid`
the cache does not hold (key rotation), at most once per `min_refresh` so that forged `kid`s
cannot make us hammer the RS.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from profiles.arap.signed import peek
from profiles.arop.txn_challenge import KeyResolver

if TYPE_CHECKING:
    from joserfc.jwk import Key

log = logging.getLogger("arop.oauth")
MAX_JWKS_BYTES = 256 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age=(\d+)\s*(?:,|$)")


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


class _Cached(msgspec.Struct):
    keys: dict[str | None, Any]  # kid → key; None for a key without kid
    fresh_until: float
    fetched_at: float


class ResourceServerKeys:
    def __init__(
        self,
        servers: Sequence[ResourceServer],
        *,
        ca_file: str = "",
        timeout: float = 5.0,
        min_age: int = 60,
        max_age: int = 3600,
        min_refresh: float = 10.0,
    ) -> None:
        self._servers = {server.issuer: server for server in servers}
        self._ca_file = ca_file
        self._timeout = timeout
        self._min_age, self._max_age, self._min_refresh = min_age, max_age, min_refresh
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def resolver(self, token: object) -> KeyResolver:
        """A `(iss, kid) -> key` resolver for verifying `token` (profiles.arop.txn_challenge):
        the keys of the RS the token's unverified `iss` names are loaded (or refreshed for an
        unknown `kid`) first, since the resolver itself cannot wait."""
        issuer, kid = peek(token)
        if issuer in self._servers:
            await self._ensure(issuer, kid)

        def resolve(iss: str, kid: str | None) -> Key | None:
            cached = self._cache.get(iss)
            if cached is None or iss not in self._servers:
                return None
            if kid is None and len(cached.keys) != 1:
                return None  # TX-32: with several keys, the challenge must say which
            key: Key | None = cached.keys.get(kid) if kid is not None else next(iter(cached.keys.values()))
            return key

        return resolve

    async def _ensure(self, issuer: str, kid: str | None) -> None:
        server = self._servers[issuer]
        if server.jwks is not None:
            if issuer not in self._cache:
                self._cache[issuer] = _Cached(_import(server.jwks), float("inf"), time.monotonic())
            return
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            cached = self._cache.get(issuer)
            now = time.monotonic()
            stale = cached is None or now >= cached.fresh_until
            unknown_kid = cached is not None and kid is not None and kid not in cached.keys
            if not stale and not (unknown_kid and now - cached.fetched_at >= self._min_refresh):
                return
            try:
                document, max_age = await self._fetch(server.jwks_uri)
                keys = _import(document)
            except (OSError, ValueError) as exc:
                # Keep serving the keys we had: a fetch failure must not stop verification of
                # challenges signed with known keys; a new kid just stays unknown.
                log.warning("could not fetch txn challenge keys", extra={"issuer": issuer, "error": str(exc)[:200]})
                return
            age = min(max(max_age if max_age is not None else self._min_age, self._min_age), self._max_age)
            self._cache[issuer] = _Cached(keys, now + age, now)

    async def _fetch(self, url: str) -> tuple[dict[str, Any], int | None]:
        import httpx  # loaded on first use, like callback delivery

        try:
            async with httpx.AsyncClient(verify=self._tls, trust_env=False, follow_redirects=False, timeout=self._timeout) as client:
                response = await client.get(url, headers={"Accept": "application/jwk-set+json, application/json"})
        except httpx.HTTPError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}")
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError("the JWK Set is too large")
        try:
            document = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            raise ValueError("the JWK Set is not JSON") from None
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        return document, int(match.group(1)) if match else None

    @functools.cached_property
    def _tls(self) -> ssl.SSLContext:
        # Imported here: services.config reads ResourceServer from this module, and the
        # delivery module needs services.config.
        from services.access_requests.delivery import tls_context

        return tls_context(self._ca_file)


def _import(document: object) -> dict[str | None, Any]:
    """The verification keys of a JWK Set: public keys with `use` absent or `sig`; a private
    member is refused (someone published the wrong file)."""
    from joserfc.jwk import JWKRegistry

    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str | None, Any] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if any(member in entry for member in ("d", "p", "q", "k")):
            raise ValueError("the JWK Set holds private or symmetric key material")
        try:
            keys[entry.get("kid")] = JWKRegistry.import_key(entry)
        except Exception as exc:  # joserfc raises several types for malformed keys
            raise ValueError(f"unusable key in the JWK Set: {exc}") from None
    return keys
