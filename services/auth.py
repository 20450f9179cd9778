"""Caller authentication for the HTTP APIs (DESIGN.md §3 "Callers").

Each caller has one credential:
- a static API key, configured as its SHA-256 hash (`arop callers new-key` prints a key and its
  hash). Keys are 256-bit random, so a fast hash is the right tool (no password hashing
  needed), and comparison is constant-time over every configured caller;
- bearer JWTs from a configured issuer: asymmetric signature by a key of the issuer's JWK Set
  (services.jwks), `iss`, `aud`, `sub`, `exp` required, `nbf`/`iat` with `JWT_LEEWAY`;
- a TLS client certificate, as a trusted TLS-terminating proxy forwards it in the RFC 9440
  `Client-Cert` header (uvicorn does not expose the peer certificate): its SHA-256 thumbprint
  is compared in constant time. The header is ignored from any other peer.

Authentication is synchronous, so that the API-key path costs no await. A JWT whose issuer's
keys are not loaded yet (or names an unknown `kid`) needs `await Authenticator.prepare(...)`
first; without it the token is refused (fail closed), never accepted unverified.

Out of the box — no callers configured, bound to loopback — the AuthZEN endpoints answer
unauthenticated loopback callers so that a newcomer can `curl` a decision. `arop serve` refuses
to bind anywhere else without configured callers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import msgspec

from profiles.arap.signed import UnverifiedToken, numeric_date, unverified_parts, verify_jwt
from services.config import CallerConfig, JwtCredential, ReviewerConfig
from services.jwks import JwksCache

Scope = Literal["evaluate", "explain", "request", "cancel", "admin", "oauth"]
KEY_PREFIX = "arop_"
JWT_LEEWAY = timedelta(seconds=30)
T = TypeVar("T")
log = logging.getLogger("arop.auth")


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


class _JwtCaller(msgspec.Struct, frozen=True):
    credential: JwtCredential
    caller: Caller
    keys: JwksCache


class Authenticator:
    def __init__(
        self,
        callers: list[CallerConfig],
        reviewers: list[ReviewerConfig] = (),  # type: ignore[assignment]
        *,
        trusted_proxies: Sequence[str] = (),
        min_refresh: float = 10.0,
    ) -> None:
        """`min_refresh`: the shortest interval between two fetches of an issuer's JWK Set."""
        self._callers: list[tuple[bytes, Caller]] = []
        self._jwt: dict[tuple[str, str], _JwtCaller] = {}  # (iss, sub) → caller
        self._mtls: list[tuple[bytes, Caller]] = []  # SHA-256 of the certificate → caller
        key_sets: dict[tuple[str, str], JwksCache] = {}
        for c in callers:
            caller = Caller(c.name, frozenset(c.scopes), tuple((p.type, p.id) for p in c.subjects))
            if c.jwt is not None:
                keys = key_sets.get((c.jwt.jwks_uri, c.jwt.ca_file))
                if keys is None:
                    keys = key_sets[(c.jwt.jwks_uri, c.jwt.ca_file)] = JwksCache(c.jwt.jwks_uri, ca_file=c.jwt.ca_file, min_refresh=min_refresh)
                self._jwt[(c.jwt.issuer, c.jwt.subject)] = _JwtCaller(c.jwt, caller, keys)
            elif c.mtls is not None:
                self._mtls.append((base64.urlsafe_b64decode(c.mtls.x5t_s256 + "="), caller))
            else:
                self._callers.append((bytes.fromhex(c.key_sha256), caller))
        self._configured = bool(callers)
        self._proxies = tuple(ipaddress.ip_network(network, strict=False) for network in trusted_proxies)
        # Cheap flags for the request path: skip the JWT preparation and the Client-Cert header
        # entirely when no caller uses them.
        self.uses_jwt = bool(self._jwt)
        self.uses_mtls = bool(self._mtls)
        self._reviewers = [
            (bytes.fromhex(r.key_sha256), Reviewer(r.name, r.entity.type, r.entity.id))
            for r in reviewers
            if r.key_sha256  # a reviewer with only a password signs in to the web UI
        ]

    @property
    def open_on_loopback(self) -> bool:
        return not self._configured

    async def prepare(self, authorization: str | None) -> None:
        """Load (or refresh, for an unknown `kid`) the JWK Set a bearer JWT of a configured
        caller needs, so that `authenticate` can verify it without waiting. Does nothing for
        anything else; never raises."""
        if not self._jwt or authorization is None:
            return
        kind, _, credential = authorization.partition(" ")
        found = self._jwt_entry(credential.strip()) if kind.lower() == "bearer" else None
        if found is None:
            return
        entry, kid = found
        if isinstance(kid, (str, type(None))) and entry.keys.needs_fetch(kid):
            await entry.keys.ensure(kid)

    def authenticate(self, authorization: str | None, client_host: str | None, scope: Scope, client_cert: str | None = None) -> Caller:
        """Return the caller allowed to use `scope`, or raise AuthError (401 or 403).

        `client_cert`: the RFC 9440 `Client-Cert` header ("" when it was sent more than once),
        considered only without `Authorization` and only from a trusted proxy."""
        if authorization is None:
            if client_cert is not None and self._mtls and client_host and self._trusted_proxy(client_host):
                return _scoped(self._certificate_holder(client_cert), scope)
            if self.open_on_loopback and scope in ANONYMOUS_LOOPBACK.scopes and scope != "explain" and client_host and is_loopback(client_host):
                return ANONYMOUS_LOOPBACK
            raise AuthError(401, "authentication required: send Authorization: Bearer <API key>")
        found = _match(authorization, self._callers)
        if found is None and self._jwt:
            found = self._jwt_holder(authorization.partition(" ")[2].strip())
        return _scoped(found, scope)

    def _jwt_holder(self, token: str) -> Caller | None:
        """The configured caller a bearer JWT authenticates, or None. Why a token is refused is
        logged (never the token), not told to the client."""
        found = self._jwt_entry(token)
        if found is None:
            return None
        entry, _ = found
        credential = entry.credential

        def resolve(iss: str | None, kid: str | None) -> Any:
            return entry.keys.key(kid) if iss == credential.issuer else None

        try:
            verified = verify_jwt(token, resolve_key=resolve, audience=credential.audience, algorithms=tuple(credential.algorithms))
            _check_jwt_claims(verified.claims, credential, datetime.now(UTC))
        except UnverifiedToken as exc:
            log.info("caller JWT refused", extra={"caller": entry.caller.name, "reason": exc.detail[:200]})
            return None
        return entry.caller

    def _jwt_entry(self, token: str) -> tuple[_JwtCaller, object] | None:
        """The configured JWT caller a token claims to come from (its unverified `iss` and
        `sub`), with the `kid` of its header; None for anything else."""
        if token.count(".") != 2:
            return None
        header, claims = unverified_parts(token)
        issuer, subject = claims.get("iss"), claims.get("sub")
        entry = self._jwt.get((issuer, subject)) if isinstance(issuer, str) and isinstance(subject, str) else None
        return None if entry is None else (entry, header.get("kid"))

    def _trusted_proxy(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    def _certificate_holder(self, client_cert: str) -> Caller | None:
        """The caller whose certificate a trusted proxy forwarded (RFC 9440 §2.2: a structured
        field byte sequence, `:<base64 DER>:`), compared in constant time against every one."""
        value = client_cert.strip()
        if len(value) < 3 or value[0] != ":" or value[-1] != ":":
            return None
        try:
            der = base64.b64decode(value[1:-1] + "=" * (-len(value[1:-1]) % 4), validate=True)
        except ValueError:
            return None
        return _holder(hashlib.sha256(der).digest(), self._mtls)

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
    return _holder(hashlib.sha256(credential.strip().encode()).digest(), candidates)


def _holder(digest: bytes, candidates: list[tuple[bytes, T]]) -> T | None:
    """The candidate whose digest is `digest`, compared in constant time against every one
    (no early exit: the time does not tell how far down the list a match was)."""
    found: T | None = None
    for expected, holder in candidates:
        if hmac.compare_digest(digest, expected):
            found = holder
    return found


def _scoped(found: Caller | None, scope: Scope) -> Caller:
    if found is None:
        raise AuthError(401, "invalid credentials")
    if scope not in found.scopes:
        raise AuthError(403, f"caller {found.name!r} may not use this API (needs scope {scope!r})")
    return found


def _check_jwt_claims(claims: dict[str, object], credential: JwtCredential, now: datetime) -> None:
    """After the signature and `aud` (verify_jwt): exactly our issuer and subject, `exp`
    required, `nbf` and `iat` not in the future, each with `JWT_LEEWAY`."""
    if claims.get("iss") != credential.issuer or claims.get("sub") != credential.subject:
        raise UnverifiedToken("iss or sub does not name this caller")
    try:
        expires, not_before, issued = (numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
    except ValueError as exc:
        raise UnverifiedToken(str(exc)) from None
    if expires is None:
        raise UnverifiedToken("exp is missing")
    if now - JWT_LEEWAY >= expires:
        raise UnverifiedToken("expired")
    if not_before is not None and now + JWT_LEEWAY < not_before:
        raise UnverifiedToken("not valid yet (nbf)")
    if issued is not None and now + JWT_LEEWAY < issued:
        raise UnverifiedToken("issued in the future (iat)")
