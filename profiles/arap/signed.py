"""Compact JWS/JWT signing and verification shared by `binding_token` and `approval.state`.

One rule for both directions (AR-23..AR-26, AR-69): ES256 only, key chosen by `kid` and trusted
for the token's `iss`, signature, then `aud`. Everything else (jti, binding claims, freshness,
scope) is the caller's, in the order its own procedure prescribes.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from profiles.arap.model import JSONObject

if TYPE_CHECKING:
    from joserfc.jwk import ECKey

ALGORITHM = "ES256"
BINDING_TYP = "arap-binding+jwt"
APPROVAL_TYP = "arap-approval+jwt"



@functools.cache
def _jose() -> Any:
    """joserfc, loaded on first use: with cryptography under it, it costs every worker ~15 MiB,
    which a PDP whose bundle never issues ARAP artifacts should not pay."""
    from joserfc import jws, jwt
    from joserfc.errors import JoseError

    return jws, jwt, JoseError


@functools.cache
def _registry(algorithms: tuple[str, ...]) -> Any:
    """A registry that knows only `algorithms`: `alg: none`, HMAC (key confusion with a public
    key as the secret) and every other algorithm fail before a key is even looked up."""
    return _jose()[0].JWSRegistry(algorithms=list(algorithms))


KeyResolver = Callable[[str | None, str | None], "ECKey | None"]
"""`(iss, kid) -> key`: a key trusted for that issuer, else None. The service refreshes its JWK
Set once on a miss (AR-5) before answering None."""


class UnverifiedToken(Exception):
    """The token failed the signature-level checks; `detail` says which."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class VerifiedToken(msgspec.Struct, frozen=True):
    header: JSONObject
    claims: JSONObject


def sign_jwt(claims: JSONObject, key: ECKey, typ: str) -> str:
    """An ES256 compact JWS over `claims`, with `kid` (AR-4, AR-69) and an explicit `typ`."""
    header: JSONObject = {"alg": ALGORITHM, "typ": typ}
    if key.kid:
        header["kid"] = key.kid
    jwt = _jose()[1]
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def unverified_parts(token: object) -> tuple[JSONObject, JSONObject]:
    """The header and claims of a compact JWS, UNVERIFIED: to choose keys before verifying, or
    to read back a token that was verified when it was stored. ({}, {}) for anything unreadable."""
    if not isinstance(token, str) or token.count(".") != 2:
        return {}, {}
    header_text, payload_text, _ = token.split(".")
    try:
        header = msgspec.json.decode(base64.urlsafe_b64decode(header_text + "=" * (-len(header_text) % 4)))
        claims = msgspec.json.decode(base64.urlsafe_b64decode(payload_text + "=" * (-len(payload_text) % 4)))
    except (ValueError, msgspec.DecodeError):
        return {}, {}
    return (header if isinstance(header, dict) else {}), (claims if isinstance(claims, dict) else {})


def peek(token: object) -> tuple[str | None, str | None]:
    """The `iss` claim and `kid` header of a compact JWS, UNVERIFIED: only to choose which keys
    to load before verifying. (None, None) for anything unreadable."""
    header, claims = unverified_parts(token)
    issuer, kid = claims.get("iss"), header.get("kid")
    return (issuer if isinstance(issuer, str) else None), (kid if isinstance(kid, str) else None)


def media_type(typ: object) -> str:
    """RFC 7515 §4.1.9: `typ` compares case-insensitively with `application/` optional."""
    text = typ.lower() if isinstance(typ, str) else ""
    return text.removeprefix("application/")


def verify_jwt(
    token: str,
    *,
    resolve_key: KeyResolver,
    audience: str | None,
    algorithms: tuple[str, ...] = (ALGORITHM,),
    typ: str | None = None,
) -> VerifiedToken:
    """Steps 1-2 of AR-26 (and AR-69): parse, check `alg` (and `typ` when one is required),
    select the key by `iss` + `kid`, check the signature, then `aud` (absent or not naming
    `audience` fails). Raises UnverifiedToken. Other profiles (the txn challenge, TX-32) pass
    their own algorithms and `typ`; ARAP artifacts are ES256 only (D-ARAP-4). `audience` None:
    a token type that carries no `aud` (a client attestation names its client in `sub`)."""
    jws, _, JoseError = _jose()
    registry = _registry(algorithms)
    try:
        compact = jws.extract_compact(token.encode("ascii"), registry=registry)
    except (JoseError, ValueError, UnicodeError):
        raise UnverifiedToken("not a compact JWS") from None
    header = compact.headers()
    if header.get("alg") not in algorithms:
        raise UnverifiedToken(f"alg {header.get('alg')!r} is not accepted; only {', '.join(algorithms)}")
    if typ is not None and media_type(header.get("typ")) != typ:
        raise UnverifiedToken(f"typ must be {typ}")
    if "crit" in header or "b64" in header:
        raise UnverifiedToken("JWS extensions (crit, b64) are not accepted")
    claims = _claims(compact.payload)
    issuer, kid = claims.get("iss"), header.get("kid")
    if not isinstance(issuer, (str, type(None))) or not isinstance(kid, (str, type(None))):
        raise UnverifiedToken("iss and kid must be strings")
    key = resolve_key(issuer, kid)
    if key is None:
        raise UnverifiedToken(f"no key trusted for iss {issuer!r} with kid {kid!r}")
    try:
        valid = jws.validate_compact(compact, key, registry=registry)
    except (JoseError, ValueError):
        valid = False
    if not valid:
        raise UnverifiedToken("signature does not verify")
    if audience is not None:
        _check_audience(claims, audience)
    return VerifiedToken(header=dict(header), claims=claims)


def _claims(payload: bytes | None) -> JSONObject:
    # Decoded like every request body (msgspec): numbers keep the same int/float typing on both
    # sides of a comparison, and NaN/Infinity are refused.
    try:
        claims = msgspec.json.decode(payload or b"")
    except msgspec.DecodeError:
        raise UnverifiedToken("payload is not JSON") from None
    if not isinstance(claims, dict):
        raise UnverifiedToken("payload is not a JSON object")
    return claims


def _check_audience(claims: JSONObject, audience: str) -> None:
    """`aud` is REQUIRED and must be, or contain, our identifier (AR-26 step 2, AR-69, §19 item 2)."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in [value for value in audiences if isinstance(value, str)]:
        raise UnverifiedToken("aud is missing or does not name this service")


def numeric_date(claims: JSONObject, name: str) -> datetime | None:
    """RFC 7519 NumericDate claim `name` as a UTC instant; None when absent; ValueError when
    it is not a number (a bool is not) or out of range."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is not a NumericDate")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{name} is out of range") from None


def lifetime(claims: JSONObject, *, now: datetime, skew: timedelta) -> tuple[datetime | None, datetime]:
    """RFC 7519 §4.1.4-§4.1.6 for a token that must expire: `(iat, exp)`, after checking that
    it has not expired, was not issued in the future and is not before its `nbf`, each within
    `skew`. ValueError names what is wrong."""
    issued_at, expires_at, not_before = (numeric_date(claims, name) for name in ("iat", "exp", "nbf"))
    if expires_at is None:
        raise ValueError("exp is required")
    if now > expires_at + skew:
        raise ValueError("has expired")
    if (issued_at is not None and issued_at > now + skew) or (not_before is not None and not_before > now + skew):
        raise ValueError("is not valid yet")
    return issued_at, expires_at
