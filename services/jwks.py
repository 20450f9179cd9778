"""Verification keys published as a JWK Set, fetched and cached: one place for every key set
the service trusts from elsewhere (resource servers' transaction-challenge keys, attesters and
mandate issuers of client evidence, the issuers of callers' bearer JWTs).

A set is fetched over https only (TLS verified, an extra CA bundle for a private PKI, no
redirects, no proxy from the environment, at most `MAX_JWKS_BYTES`), cached for the document's
`Cache-Control: max-age` clamped to [`min_age`, `max_age`], and fetched again once when a token
names a `kid` the cache does not hold (key rotation), at most once per `min_refresh` so that
forged `kid`s cannot make us hammer the publisher. A failed fetch keeps the keys we had, and
is not retried before `min_refresh` either.

This module must not import services.config at module level: the configuration reads
`TrustedIssuer` from services.oauth.issuer_keys, which builds on this module.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from joserfc.jwk import Key

log = logging.getLogger("arop.jwks")
MAX_JWKS_BYTES = 256 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age=(\d+)\s*(?:,|$)")


class _Cached(msgspec.Struct):
    keys: dict[str | None, Any]  # kid → key; None for a key without kid
    fresh_until: float
    fetched_at: float


class JwksCache:
    """The keys of one JWK Set: fetched from `uri`, or given inline as `jwks` (never fetched).

    `ensure(kid)` (async) loads or refreshes the set as needed; `key(kid)` (sync) answers from
    what is loaded, so that verification itself never waits."""

    def __init__(
        self,
        uri: str = "",
        *,
        jwks: dict[str, Any] | None = None,
        ca_file: str = "",
        timeout: float = 5.0,
        min_age: int = 60,
        max_age: int = 3600,
        min_refresh: float = 10.0,
    ) -> None:
        if bool(uri) == (jwks is not None):
            raise ValueError("a JWK Set comes from exactly one of a URI and an inline document")
        if uri and not uri.startswith("https://"):
            raise ValueError("a JWK Set URI must be https")
        self.uri = uri
        self._inline = jwks
        self._ca_file = ca_file
        self._timeout = timeout
        self._min_age, self._max_age, self._min_refresh = min_age, max_age, min_refresh
        self._cached: _Cached | None = None
        self._retry_at = 0.0  # after a failed fetch, none before this instant
        self._lock = asyncio.Lock()

    def key(self, kid: str | None) -> Key | None:
        """The loaded key `kid` names; without a `kid`, the only key of a one-key set (with
        several, the token must say which). None when there is no such key (yet)."""
        cached = self._cached
        if cached is None:
            return None
        if kid is None:
            return next(iter(cached.keys.values())) if len(cached.keys) == 1 else None
        key: Key | None = cached.keys.get(kid)
        return key

    def needs_fetch(self, kid: str | None) -> bool:
        """Whether `ensure(kid)` would fetch now: nothing loaded, stale, or an unknown `kid` past
        the refetch interval. A cheap check so that callers can skip the await."""
        if self._inline is not None:
            return self._cached is None
        now = time.monotonic()
        cached = self._cached
        if now < self._retry_at:
            return False
        if cached is None or now >= cached.fresh_until:
            return True
        return kid is not None and kid not in cached.keys and now - cached.fetched_at >= self._min_refresh

    async def ensure(self, kid: str | None = None) -> None:
        """Load the set if it is not loaded or stale, or fetch it again for an unknown `kid`
        (at most once per `min_refresh`). Never raises for a failed fetch: the keys we had stay."""
        if self._inline is not None:
            if self._cached is None:
                self._cached = _Cached(import_jwks(self._inline), float("inf"), time.monotonic())
            return
        if not self.needs_fetch(kid):
            return
        async with self._lock:
            if not self.needs_fetch(kid):  # another request fetched while we waited
                return
            now = time.monotonic()
            try:
                document, max_age = await self._fetch()
                keys = import_jwks(document)
            except (OSError, ValueError) as exc:
                log.warning("could not fetch a JWK Set", extra={"jwks_uri": self.uri, "error": str(exc)[:200]})
                self._retry_at = now + self._min_refresh  # a publisher that is down is not hammered either
                return
            age = min(max(max_age if max_age is not None else self._min_age, self._min_age), self._max_age)
            self._cached = _Cached(keys, now + age, now)

    async def _fetch(self) -> tuple[Any, int | None]:
        import httpx  # loaded on first use, like callback delivery

        try:
            async with httpx.AsyncClient(verify=cached_tls_context(self._ca_file), trust_env=False, follow_redirects=False, timeout=self._timeout) as client:
                async with client.stream("GET", self.uri, headers={"Accept": "application/jwk-set+json, application/json"}) as response:
                    if response.status_code != 200:
                        raise ValueError(f"HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            raise ValueError("the JWK Set is too large")
                    cache_control = response.headers.get("cache-control", "")
        except httpx.HTTPError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        try:
            document = msgspec.json.decode(bytes(body))
        except msgspec.DecodeError:
            raise ValueError("the JWK Set is not JSON") from None
        match = _MAX_AGE.search(cache_control)
        return document, int(match.group(1)) if match else None


@functools.cache
def cached_tls_context(ca_file: str) -> ssl.SSLContext:
    # Imported here: services.access_requests.delivery needs services.config (module docstring).
    from services.access_requests.delivery import tls_context

    return tls_context(ca_file)


def import_jwks(document: object) -> dict[str | None, Any]:
    """The verification keys of a JWK Set: public keys with `use` absent or `sig`; a private
    or symmetric member is refused (someone published the wrong file)."""
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
