"""Denial binding with a PDP-signed `binding_token` (spec/arap.md §5, AR-23..AR-27).

The PDP side builds the claims (`binding_claims`) and signs them (`sign_binding_token`); the ARS
side verifies a submitted token against what was submitted (`verify_binding_token`) in exactly
the order of AR-26, so every failure has the problem type the spec gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from profiles.arap.compare import (
    Covered,
    bound_document,
    documents_match,
    relevant_members,
)
from profiles.arap.errors import ExpiredDenial, InvalidDenialBinding
from profiles.arap.jcs import binding_hash
from profiles.arap.model import Denial, JSONObject, format_instant, parse_instant
from profiles.arap.signed import (
    APPROVAL_TYP,
    BINDING_TYP,
    KeyResolver,
    UnverifiedToken,
    media_type,
    numeric_date,
    sign_jwt,
    verify_jwt,
)

if TYPE_CHECKING:
    from joserfc.jwk import ECKey

SeenJti = Callable[[str, datetime], bool]
"""`(jti, until) -> already seen?`: remembers `jti` until `until` and answers whether it had
been presented before (AR-26 step 3). Atomic in the service's store or replay cache."""


class VerifiedBinding(msgspec.Struct, frozen=True):
    """What a verified denial binding establishes for the task record (AR-16, AR-44).

    `members` is the authorization-relevant Context member set (AR-18; `None`: no set was
    bound, the Context does not bind); `deadline` the freshness deadline that was enforced.
    """

    evaluation_id: str | None
    members: list[str] | None
    deadline: datetime


def binding_claims(
    *,
    issuer: str,
    audience: str | list[str],
    covered: Covered,
    members: Iterable[str] | None,
    expires_at: datetime,
    now: datetime,
    lifetime: timedelta,
    jti: str,
    evaluation_id: str | None = None,
    inline: bool = True,
) -> JSONObject:
    """The JWT claims of a `binding_token` (§5 table, AR-25), for the PDP to sign.

    `aud` is always present (REQUIRED). `exp` is the earlier of `now + lifetime` and the hint's
    expiry, and `denial_expires_at` protects the hint's expiry so the ARS can hold the echoed
    value to it (AR-27). `binding_context_members` is present whenever a member set is given
    (possibly `[]`), with machinery names removed (AR-17). Binding claims are inline
    (RECOMMENDED) or the AR-25 `binding_hash`; bulk when `covered` is bulk.
    """
    bound_members = relevant_members(members) if members is not None else None
    claims: JSONObject = {
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int(min(now + lifetime, expires_at).timestamp()),
        "jti": jti,
        "denial_expires_at": format_instant(expires_at),
    }
    if bound_members is not None:
        claims["binding_context_members"] = bound_members
    if evaluation_id is not None:
        claims["evaluation_id"] = evaluation_id
    if inline:
        claims.update(bound_document(covered, bound_members))
    else:
        claims["binding_hash"] = binding_hash(covered, bound_members)
    return claims


def sign_binding_token(claims: JSONObject, key: ECKey) -> str:
    """AR-23: a compact JWS signed by the PDP (ES256, `kid`, `typ: arap-binding+jwt`)."""
    return sign_jwt(claims, key, BINDING_TYP)


def verify_binding_token(
    denial: Denial,
    covered: Covered,
    *,
    resolve_key: KeyResolver,
    audience: str,
    now: datetime,
    skew: timedelta,
    seen_jti: SeenJti,
) -> VerifiedBinding:
    """The ARS verification procedure of AR-26/AR-27, in its order.

    1. key by `kid`, trusted for `iss`; 2. ES256 signature, then `aud`; 3. `jti` replay;
    4. binding claims (inline and/or hash) against `covered`, token `evaluation_id` against
    `denial.evaluation_id`; 5. freshness. Steps 1-4 and unprovable freshness raise
    InvalidDenialBinding (400); a passed deadline (after `skew`) raises ExpiredDenial (410).
    Idempotent retries must be answered before calling this (§8.6 Impl).
    """
    if not denial.binding_token:
        raise InvalidDenialBinding("the denial carries no binding_token")
    try:
        verified = verify_jwt(denial.binding_token, resolve_key=resolve_key, audience=audience)
    except UnverifiedToken as exc:
        raise InvalidDenialBinding(f"binding_token: {exc.detail}") from None
    if media_type(verified.header.get("typ")) == APPROVAL_TYP:
        raise InvalidDenialBinding("binding_token: an approval state is not a denial binding")
    claims = verified.claims
    try:
        expiry, not_before = numeric_date(claims, "exp"), numeric_date(claims, "nbf")
    except ValueError as exc:
        raise InvalidDenialBinding(f"binding_token: {exc}") from None
    protected = _protected_expiry(claims)
    echoed = _echoed_expiry(denial)

    jti = claims.get("jti")
    if jti is not None:
        if not isinstance(jti, str):
            raise InvalidDenialBinding("binding_token: jti must be a string")
        # Remember it as long as the token can be valid: its own protected expiry, not the
        # echo (unverified until step 5, a forged short echo would shorten the memory).
        if seen_jti(jti, (expiry or protected or echoed) + skew):
            raise InvalidDenialBinding("binding_token was already presented (jti replay)")

    members = _bound_members(claims)
    _check_binding_claims(claims, covered, members)
    token_evaluation = claims.get("evaluation_id")
    if token_evaluation is not None and denial.evaluation_id is not None and token_evaluation != denial.evaluation_id:
        raise InvalidDenialBinding("denial.evaluation_id differs from the binding_token's evaluation_id")

    deadline = _deadline(expiry, protected, echoed)
    if not_before is not None and now + skew < not_before:
        raise InvalidDenialBinding("binding_token is not valid yet (nbf)")
    if now > deadline + skew:
        raise ExpiredDenial(f"the denial expired at {format_instant(deadline)}")
    evaluation_id = token_evaluation if isinstance(token_evaluation, str) else denial.evaluation_id
    return VerifiedBinding(evaluation_id=evaluation_id, members=members, deadline=deadline)


def _echoed_expiry(denial: Denial) -> datetime:
    try:
        return parse_instant(denial.expires_at)
    except ValueError:
        raise InvalidDenialBinding("denial.expires_at is not an RFC 3339 date-time") from None


def _bound_members(claims: JSONObject) -> list[str] | None:
    """AR-17/AR-18: the protected member set; absent means the Context does not bind."""
    members = claims.get("binding_context_members")
    if members is None:
        return None
    if not isinstance(members, list) or not all(isinstance(name, str) for name in members):
        raise InvalidDenialBinding("binding_token: binding_context_members must be an array of strings")
    return members


def _check_binding_claims(claims: JSONObject, covered: Covered, members: Sequence[str] | None) -> None:
    """AR-26 step 4 / AR-25: every binding form the token carries must match the submission."""
    inline = "subject" in claims
    if not inline and "binding_hash" not in claims:
        raise InvalidDenialBinding("binding_token carries neither inline binding claims nor binding_hash")
    if "binding_hash" in claims:
        try:
            expected = binding_hash(covered, members)
        except ValueError as exc:
            raise InvalidDenialBinding(f"the submission cannot be canonicalised: {exc}") from None
        if claims["binding_hash"] != expected:
            raise InvalidDenialBinding("binding_hash does not match the submission")
    if inline:
        bound: JSONObject = {name: claims[name] for name in ("subject", "resource", "action", "items") if name in claims}
        bound["context"] = claims.get("context", {})
        if not documents_match(bound, covered, members):
            raise InvalidDenialBinding("the binding_token's subject, resource, action or context differ from the submission")


def _protected_expiry(claims: JSONObject) -> datetime | None:
    protected = claims.get("denial_expires_at")
    if protected is None:
        return None
    try:
        return parse_instant(protected)
    except ValueError:
        raise InvalidDenialBinding("binding_token: denial_expires_at is not an RFC 3339 date-time") from None


def _deadline(expiry: datetime | None, protected: datetime | None, echoed: datetime) -> datetime:
    """AR-27: the earlier of `exp` and the echoed expiry, once the echo is proven genuine:
    equal to the protected expiry, or (none protected) no earlier than `exp`."""
    if protected is not None:
        if protected != echoed:
            raise InvalidDenialBinding("denial.expires_at differs from the binding_token's denial_expires_at")
        return min(expiry, echoed) if expiry is not None else echoed
    if expiry is None:
        raise InvalidDenialBinding("freshness unprovable: the binding_token has neither exp nor denial_expires_at")
    if expiry > echoed:
        raise InvalidDenialBinding("freshness unprovable: exp is later than the unprotected denial.expires_at")
    return expiry
