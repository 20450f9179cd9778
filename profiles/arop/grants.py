"""What the AS may mint (spec/arop.md §2, §9, §13, §11.3): never broader than requested, never
outliving the approval, bound to the origination key, audience-restricted; and the refresh and
exchange checks that keep later credentials inside the same bounds (OP-35).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from profiles.arap.compare import json_equal
from profiles.arap.model import JSONObject, format_instant, parse_instant
from profiles.arop.errors import (
    ACCESS_DENIED,
    INVALID_AUTHORIZATION_DETAILS,
    INVALID_GRANT,
    INVALID_SCOPE,
    INVALID_TARGET,
    OAuthFailure,
)
from profiles.arop.model import (
    Confirmation,
    DecideRequest,
    ExchangeCheckRequest,
    Grant,
    RefreshCheckRequest,
    Sender,
)
from profiles.arop.requested import Requested, scope_tokens
from profiles.arop.txn_challenge import VerifiedChallenge

# TX-63: the list-valued RAR members whose values a grant may narrow to a non-empty subset.
_NARROWABLE = frozenset({"actions", "locations", "datatypes", "privileges"})


class GrantPolicy(msgspec.Struct, frozen=True):
    """Deployment lifetimes (D-AROP-19): `access_ttl` (OP-34's policy ttl), `refresh_ttl`
    (None: no refresh tokens), and `floor`, the shortest lifetime worth issuing (OP-34)."""

    access_ttl: timedelta
    refresh_ttl: timedelta | None = None
    floor: timedelta = timedelta(seconds=1)


# -- OP-4 / OP-33: never broader -----------------------------------------------------------


def element_within(granted: JSONObject, requested: JSONObject) -> bool:
    """Is one granted `authorization_details` object a narrowing of a requested one?

    Same member names (dropping a member can widen it: absent often means "any"), the common
    list members a non-empty subset (compared as JSON values, AR-21), every other member equal.
    """
    if granted.keys() != requested.keys():
        return False
    for name, wanted in requested.items():
        given = granted[name]
        if name in _NARROWABLE and isinstance(given, list) and isinstance(wanted, list):
            if not given or not all(any(json_equal(item, w) for w in wanted) for item in given):
                return False
        elif not json_equal(given, wanted):
            return False
    return True


def details_within(granted: Sequence[JSONObject], requested: Sequence[JSONObject]) -> bool:
    """OP-4, OP-33, TX-44: every granted element narrows some requested element."""
    return all(any(element_within(g, r) for r in requested) for g in granted)


def scope_within(granted: Sequence[str], requested: Sequence[str]) -> bool:
    """OP-4: granted scope tokens are a subset of the requested ones."""
    return set(granted) <= set(requested)


# -- OP-34 / OP-63 / OP-5 / OP-59 ----------------------------------------------------------


def token_lifetime(*, now: datetime, policy: GrantPolicy, approved_until: Sequence[datetime]) -> int:
    """OP-6, OP-34: whole seconds = min(policy ttl, each approval bound − now); 0 when that is
    below the floor. `approved_until` holds the ARS approval's and any the PDP's re-evaluation
    returned (the earliest wins); empty for standing access."""
    seconds = min([policy.access_ttl.total_seconds(), *((until - now).total_seconds() for until in approved_until)])
    return math.floor(seconds) if seconds >= policy.floor.total_seconds() else 0


def confirmation(sender: Sender) -> Confirmation | None:
    """OP-63, TX-18: the token is bound to the key recorded at origination."""
    if sender.dpop_jkt is not None:
        return Confirmation(jkt=sender.dpop_jkt)
    if sender.x5t_s256 is not None:
        return Confirmation(x5t_s256=sender.x5t_s256)
    return None


def audience(requested: Requested, challenge: VerifiedChallenge | None) -> list[str]:
    """OP-5: the RFC 8707 resource indicators, in order, once each; OP-59/TX-45: for a txn
    grant, the challenging RS (`iss`) alone."""
    if challenge is not None:
        return [challenge.iss]
    return list(dict.fromkeys(requested.resource))


def build_grant(
    request: DecideRequest,
    requested: Requested,
    *,
    now: datetime,
    policy: GrantPolicy,
    approved_until: Sequence[datetime] = (),
    single_use: bool = False,
    challenge: VerifiedChallenge | None = None,
    grant_id: str | None = None,
) -> Grant:
    """The grant for an allowed request: the full requested set (OP-38; the approval is exact,
    so granted = requested, OP-4/OP-33), bounded by the approval (OP-34: no time left →
    access_denied), bound to the origination key (OP-63), audience-restricted (OP-5). A txn
    grant carries `txn` and the RS as audience (OP-59, TX-45), and the challenge's `act` as its
    actor when the AS named none (TX-45 "include equivalent requester context"; the AS's own
    actor chain, verified by it, wins: D-AROP-30). Refresh only for a reusable
    approval with a refresh policy, bounded likewise; never for txn or single-use (OP-35/36)."""
    expires_in = token_lifetime(now=now, policy=policy, approved_until=approved_until)
    if expires_in <= 0:
        raise OAuthFailure(ACCESS_DENIED)
    refresh_end = None
    if policy.refresh_ttl is not None and not single_use and challenge is None:
        refresh_end = min([now + policy.refresh_ttl, *approved_until])
    return Grant(
        subject=request.subject,
        actor=request.actor if request.actor is not None or challenge is None else challenge.act,
        authorization_details=list(requested.authorization_details) or None,
        scope=" ".join(requested.scope) or None,
        audience=audience(requested, challenge),
        expires_at=format_instant(now + timedelta(seconds=expires_in)),
        expires_in=expires_in,
        txn=challenge.txn if challenge else None,
        refresh_allowed=refresh_end is not None,
        refresh_expires_at=format_instant(refresh_end) if refresh_end else None,
        cnf=confirmation(request.sender),
        grant_id=grant_id,
    )


# -- OP-35 / OP-36 / OP-37: later uses of a grant ------------------------------------------


class GrantRecord(msgspec.Struct, frozen=True):
    """OP-37: what is persisted with an issued grant so later uses stay inside it. The AS,
    client, method and key are the origination ones (OP-62, D-AROP-29); `approved_until` the
    earliest approval bound (None: standing access); `single_use` for approvals that must not be
    reused."""

    grant: Grant
    authority: str
    client_id: str
    auth_method: str
    sender: Sender
    approved_until: str | None = None
    single_use: bool = False


def check_refresh(record: GrantRecord, request: RefreshCheckRequest, *, authority: str, now: datetime, policy: GrantPolicy) -> Grant:
    """OP-35, OP-36: a refresh only where one was allowed, before the refresh bound and the
    approval's end; the new access token is narrowed as asked and bounded again. The refresh
    bound is carried over, never extended. Refusals are invalid_grant (PDP re-evaluation
    with `context.approval` is the caller's, before minting)."""
    if not record.grant.refresh_allowed:
        raise OAuthFailure(INVALID_GRANT)
    refresh_end = record.grant.refresh_expires_at
    return _reissue(record, request, authority=authority, now=now, policy=policy, ends=[refresh_end] if refresh_end else [])


def check_exchange(record: GrantRecord, request: ExchangeCheckRequest, *, authority: str, now: datetime, policy: GrantPolicy) -> Grant:
    """OP-35, TX-47, D-AROP-14: a token exchange stays inside the grant: same client and key,
    not after the approval, not broader; a single-use (e.g. txn) grant is never exchanged. The
    output carries no refresh of its own: continued access goes through the original grant."""
    if record.single_use:
        raise OAuthFailure(INVALID_GRANT)
    grant = _reissue(record, request, authority=authority, now=now, policy=policy, ends=[])
    return msgspec.structs.replace(grant, refresh_allowed=False, refresh_expires_at=None)


def _reissue(
    record: GrantRecord,
    request: RefreshCheckRequest | ExchangeCheckRequest,
    *,
    authority: str,
    now: datetime,
    policy: GrantPolicy,
    ends: list[str],
) -> Grant:
    """The checks refresh and exchange share (OP-35, OP-62), in order: owner (the AS too,
    D-AROP-29), then time (approval and `ends`), then the narrowing, then the new lifetime."""
    owner = (record.authority, record.client_id, record.auth_method, record.sender)
    if owner != (authority, request.client_id, request.auth_method, request.sender):
        raise OAuthFailure(INVALID_GRANT)
    bounds = [parse_instant(text) for text in [*ends, *([record.approved_until] if record.approved_until else [])]]
    if any(now >= bound for bound in bounds):
        raise OAuthFailure(INVALID_GRANT)
    narrowed = _narrowed(record.grant, request)
    expires_in = token_lifetime(now=now, policy=policy, approved_until=bounds)
    if expires_in <= 0:
        raise OAuthFailure(INVALID_GRANT)
    return msgspec.structs.replace(
        narrowed, expires_at=format_instant(now + timedelta(seconds=expires_in)), expires_in=expires_in
    )


def _narrowed(grant: Grant, request: RefreshCheckRequest | ExchangeCheckRequest) -> Grant:
    """OP-35, D-AROP-15: what the client asks for now, which may narrow but never widen the
    grant: RAR → invalid_authorization_details, scope → invalid_scope, resource → invalid_target
    (TX-68)."""
    details = grant.authorization_details
    if request.authorization_details is not None:
        if not details_within(request.authorization_details, details or []):
            raise OAuthFailure(INVALID_AUTHORIZATION_DETAILS)
        details = request.authorization_details
    scope = grant.scope
    if request.scope is not None:
        if not scope_within(scope_tokens(request.scope), scope_tokens(scope)):
            raise OAuthFailure(INVALID_SCOPE)
        scope = " ".join(scope_tokens(request.scope))
    audience_now = grant.audience
    if request.resource is not None:
        if not set(request.resource) <= set(grant.audience):
            raise OAuthFailure(INVALID_TARGET)
        audience_now = list(dict.fromkeys(request.resource))
    return msgspec.structs.replace(grant, authorization_details=details, scope=scope, audience=audience_now)
