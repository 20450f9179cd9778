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
from typing import Literal, TypeVar

import msgspec

from services.config import CallerConfig, ReviewerConfig

Scope = Literal["evaluate", "explain", "request", "cancel", "admin", "oauth"]
KEY_PREFIX = "arop_"
T = TypeVar("T")


class Caller(msgspec.Struct, frozen=True):
    name: str
    scopes: frozenset[str]
    # (type, id or None) of the subjects this caller may act for; empty: any (AR-90).
    subjects: tuple[tuple[str, str | None], ...] = ()

    def may_act_for(self, subject_type: str, subject_id: str) -> bool:
        """AR-90/AR-91: may this caller submit, read or cancel access requests of the subject?"""
        if not self.subjects:
            return True
        return any(kind == subject_type and (only is None or only == subject_id) for kind, only in self.subjects)


class Reviewer(msgspec.Struct, frozen=True):
    """A person deciding access requests, as the entity approver selectors name."""

    name: str
    entity_type: str
    entity_id: str


# A development setup (no callers, loopback only): decisions explain themselves, and access
# requests can be submitted, read and cancelled so that the whole flow works with curl.
ANONYMOUS_LOOPBACK = Caller("anonymous-loopback", frozenset({"evaluate", "explain", "request", "cancel"}))


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
    def __init__(self, callers: list[CallerConfig], reviewers: list[ReviewerConfig] = ()) -> None:  # type: ignore[assignment]
        self._callers = [
            (bytes.fromhex(c.key_sha256), Caller(c.name, frozenset(c.scopes), tuple((p.type, p.id) for p in c.subjects)))
            for c in callers
        ]
        self._reviewers = [
            (bytes.fromhex(r.key_sha256), Reviewer(r.name, r.entity.type, r.entity.id))
            for r in reviewers
        ]

    @property
    def open_on_loopback(self) -> bool:
        return not self._callers

    def authenticate(self, authorization: str | None, client_host: str | None, scope: Scope) -> Caller:
        """Return the caller allowed to use `scope`, or raise AuthError (401 or 403)."""
        if authorization is None:
            if self.open_on_loopback and scope in ANONYMOUS_LOOPBACK.scopes and scope != "explain" and client_host and is_loopback(client_host):
                return ANONYMOUS_LOOPBACK
            raise AuthError(401, "authentication required: send Authorization: Bearer <API key>")
        found = _match(authorization, self._callers)
        if found is None:
            raise AuthError(401, "invalid credentials")
        if scope not in found.scopes:
            raise AuthError(403, f"caller {found.name!r} may not use this API (needs scope {scope!r})")
        return found

    def reviewer(self, authorization: str | None) -> Reviewer:
        """The reviewer a reviewer-API request comes from, or AuthError 401. Reviewers always
        authenticate, on loopback too: their identity decides who may approve (AR-96)."""
        if authorization is None:
            raise AuthError(401, "authentication required: send Authorization: Bearer <reviewer key>")
        found = _match(authorization, self._reviewers)
        if found is None:
            raise AuthError(401, "invalid credentials")
        return found


def _match(authorization: str, candidates: list[tuple[bytes, T]]) -> T | None:
    """The holder of the bearer key, compared in constant time against every candidate."""
    kind, _, credential = authorization.partition(" ")
    if kind.lower() != "bearer" or not credential.strip():
        raise AuthError(401, "unsupported authorization scheme: use Bearer")
    digest = hashlib.sha256(credential.strip().encode()).digest()
    found: T | None = None
    for expected, holder in candidates:
        if hmac.compare_digest(digest, expected):
            found = holder
    return found
