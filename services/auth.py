"""Caller authentication for the HTTP APIs (DESIGN.md §3 "Callers").

Static API keys are configured as SHA-256 hashes (`arop callers new-key` prints a key and its
hash). Keys are 256-bit random, so a fast hash is the right tool (no password hashing needed),
and comparison is constant-time over every configured caller.

Out of the box — no callers configured, bound to loopback — the AuthZEN endpoints answer
unauthenticated loopback callers so that a newcomer can `curl` a decision. `arop serve` refuses
to bind anywhere else without configured callers.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
from typing import Literal

import msgspec

from services.config import CallerConfig

Scope = Literal["evaluate", "explain", "admin"]
KEY_PREFIX = "arop_"


class Caller(msgspec.Struct, frozen=True):
    name: str
    scopes: frozenset[str]


# A development setup (no callers, loopback only): decisions explain themselves.
ANONYMOUS_LOOPBACK = Caller("anonymous-loopback", frozenset({"evaluate", "explain"}))


class AuthError(Exception):
    def __init__(self, status: Literal[401, 403], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_api_key() -> tuple[str, str]:
    """A fresh API key and the SHA-256 hex digest to put in the configuration."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    def __init__(self, callers: list[CallerConfig]) -> None:
        self._callers = [(bytes.fromhex(c.key_sha256), Caller(c.name, frozenset(c.scopes))) for c in callers]

    @property
    def open_on_loopback(self) -> bool:
        return not self._callers

    def authenticate(self, authorization: str | None, client_host: str | None, scope: Scope) -> Caller:
        """Return the caller allowed to use `scope`, or raise AuthError (401 or 403)."""
        if authorization is None:
            if self.open_on_loopback and scope == "evaluate" and client_host and is_loopback(client_host):
                return ANONYMOUS_LOOPBACK
            raise AuthError(401, "authentication required: send Authorization: Bearer <API key>")
        kind, _, credential = authorization.partition(" ")
        if kind.lower() != "bearer" or not credential.strip():
            raise AuthError(401, "unsupported authorization scheme: use Bearer")
        digest = hashlib.sha256(credential.strip().encode()).digest()
        found: Caller | None = None
        for expected, caller in self._callers:
            if hmac.compare_digest(digest, expected):
                found = caller
        if found is None:
            raise AuthError(401, "invalid credentials")
        if scope not in found.scopes:
            raise AuthError(403, f"caller {found.name!r} may not use this API (needs scope {scope!r})")
        return found
