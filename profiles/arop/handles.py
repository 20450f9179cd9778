"""Continuation handles (spec/arop.md §7, §8, §13, §14): generation, storage form, the state
machine, what a poll answers, and who may poll or revoke.

A handle is opaque and is not authority (OP-22, OP-23): it only names a record, and every use is
checked against the client, authentication method and key recorded at origination (OP-62).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

import msgspec

from profiles.arop import dtr
from profiles.arop.errors import (
    ACCESS_DENIED,
    AUTHORIZATION_PENDING,
    EXPIRED_TOKEN,
    INVALID_GRANT,
    SLOW_DOWN,
    UNAUTHORIZED_CLIENT,
    OAuthFailure,
)
from profiles.arop.model import (
    Binding,
    CancelRequest,
    DecideRequest,
    DeliveryMode,
    OAuthError,
    RedeemRequest,
    Sender,
)

HANDLE_BYTES = 32
"""OP-22/TX-10: 256 random bits, base64url without padding (`secrets.token_urlsafe`)."""
DEFAULT_INTERVAL = 5
"""OP-29: the interval clients assume when none is sent; the sidecar always sends one."""
SLOW_DOWN_STEP = 5
"""OP-28/TX-13: what one early poll adds to the handle's interval, for the rest of its life."""


def new_handle() -> str:
    """OP-22, TX-10: a fresh opaque handle with 256 bits of randomness."""
    return secrets.token_urlsafe(HANDLE_BYTES)


def handle_digest(handle: str) -> str:
    """OP-27: the stored form of a handle, SHA-256 hex, and the store key every lookup uses: the
    handle itself is never compared, so there is nothing to time; a leaked store yields no usable
    handle (answering a deduplicated request with the same handle: D-AROP-18)."""
    return hashlib.sha256(handle.encode("utf-8")).hexdigest()


class HandleState(StrEnum):
    """§7: PENDING until it resolves once into a terminal state."""

    PENDING = "pending"
    ISSUED = "issued"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


def settle(current: HandleState, new: HandleState) -> HandleState:
    """§7: a PENDING handle moves once to a terminal state; terminal states never change."""
    if current is not HandleState.PENDING:
        raise ValueError(f"the handle is already {current}")
    if new is HandleState.PENDING:
        raise ValueError("pending is not a resolution")
    return new


TaskResolution = Literal["approved", "denied", "pending"]
_DENYING_STATUSES = frozenset({"denied", "cancelled", "failed", "partial", "expired"})


def task_resolution(status: str, *, mode: str | None, has_approval: bool) -> TaskResolution:
    """§9 table, D-5, D-7: what an ARS task status means for the handle.

    `approved` counts only with an `approval` and `result.mode` absent or `reevaluate` (D-7);
    approved in any other mode is terminal but unusable, hence denied (D-AROP-9). `denied`,
    `cancelled`, `failed`, `partial` (no partial issuance, OP-38) and an ARS expiry before the
    handle's are denials. Anything else, an unknown status included, is not approved: keep
    pending until the handle expires (ARAP: unknown = not approved).
    """
    if status == "approved":
        return "approved" if has_approval and mode in (None, "reevaluate") else "denied"
    return "denied" if status in _DENYING_STATUSES else "pending"


def handle_expires_in(
    *, now: datetime, ttl: timedelta, task_expires_at: datetime | None, requested_expiry: int | None = None
) -> int:
    """D-5: the handle's lifetime in whole seconds, no later than the ARS task's expiry (so
    `expired_token` and the task expiry coincide) and no longer than a CIBA `requested_expiry`."""
    bounds = [ttl.total_seconds()]
    if task_expires_at is not None:
        bounds.append((task_expires_at - now).total_seconds())
    if requested_expiry is not None:
        bounds.append(requested_expiry)
    return math.floor(min(bounds))


def remaining_seconds(expires_at: datetime, now: datetime) -> int:
    """The `expires_in` of a deduplicated answer: the same handle's time left (§11.1 step 5)."""
    return max(0, math.floor((expires_at - now).total_seconds()))


# -- polls ---------------------------------------------------------------------------------


class PollAnswer(msgspec.Struct, frozen=True):
    """What a poll does: the handle's state and interval from now on, and the error to relay.
    `error` None means the approval is in: re-evaluate with it and issue or deny (OP-45)."""

    state: HandleState
    interval: int
    error: OAuthError | None


def poll(
    state: HandleState,
    *,
    binding: Binding,
    now: datetime,
    expires_at: datetime,
    last_poll_at: datetime,
    interval: int,
    approved: bool,
) -> PollAnswer:
    """The §7 table for a poll by the right client and key (check `check_redeemer` first),
    in the order D-AROP-8 fixes.

    In order: ISSUED → invalid_grant, always (OP-25). Expiry → expired_token; it wins over an
    earlier denial (OP-68) and moves a pending handle to EXPIRED, whose ARS request the caller
    cancels (OP-26). DENIED/CANCELLED → access_denied on every poll (TX-14). PENDING with the
    approval in → redeem, even if early: a notified client should not wait (OP-30). Earlier than
    `interval` after `last_poll_at` (the previous poll, or the handle's creation) → slow_down and
    the interval grows by SLOW_DOWN_STEP for good (OP-28). Otherwise authorization_pending, which
    repeats `interval` on DTR (TX-15). The caller records `now` as the last poll.
    """
    if state is HandleState.ISSUED:
        return PollAnswer(state, interval, _error(INVALID_GRANT))
    if state is HandleState.EXPIRED or now >= expires_at:
        return PollAnswer(HandleState.EXPIRED if state is HandleState.PENDING else state, interval, _error(EXPIRED_TOKEN))
    if state is not HandleState.PENDING:
        return PollAnswer(state, interval, _error(ACCESS_DENIED))
    if approved:
        return PollAnswer(state, interval, None)
    if (now - last_poll_at).total_seconds() < interval:
        return PollAnswer(state, interval + SLOW_DOWN_STEP, _error(SLOW_DOWN))
    if binding == "dtr":
        return PollAnswer(state, interval, dtr.pending_poll_error(interval))
    return PollAnswer(state, interval, _error(AUTHORIZATION_PENDING))


def _error(code: str) -> OAuthError:
    return OAuthError(status=400, error=code)


# -- who may use a handle ------------------------------------------------------------------


class HandleOwner(msgspec.Struct, frozen=True):
    """OP-62: recorded at origination and compared on every later use, never against the
    client's current metadata. `authority` is the AS (the sidecar caller) the client belongs
    to: client ids are an AS's own namespace, so one AS never uses another's handles (D-AROP-29).
    `delivery_mode` is set for CIBA handles."""

    authority: str
    binding: Binding
    client_id: str
    auth_method: str
    sender: Sender
    delivery_mode: DeliveryMode | None = None


def owner_of(request: DecideRequest, *, authority: str) -> HandleOwner:
    """The AS, binding, client, authentication method and key a new handle is bound to (OP-24)."""
    return HandleOwner(
        authority=authority,
        binding=request.binding,
        client_id=request.client.id,
        auth_method=request.client.auth_method,
        sender=request.sender,
        delivery_mode=request.ciba.delivery_mode if request.ciba else None,
    )


def _same_owner(owner: HandleOwner, authority: str, client_id: str, auth_method: str, sender: Sender) -> bool:
    return (owner.authority, owner.client_id, owner.auth_method, owner.sender) == (authority, client_id, auth_method, sender)


def check_redeemer(owner: HandleOwner, request: RedeemRequest, *, authority: str) -> None:
    """OP-24, OP-61, OP-62, OP-64, TX-39: only the originating client of the same AS,
    authenticated the same way and proving the same key, at the handle's own binding; anything else is invalid_grant,
    exactly like an unknown handle. A CIBA push client has nothing to redeem → unauthorized_client
    (TX-24)."""
    if request.binding != owner.binding or not _same_owner(owner, authority, request.client_id, request.auth_method, request.sender):
        raise OAuthFailure(INVALID_GRANT)
    if owner.delivery_mode == "push":
        raise OAuthFailure(UNAUTHORIZED_CLIENT, "push mode clients receive tokens at their notification endpoint")


def revocation_applies(owner: HandleOwner, request: CancelRequest, *, authority: str) -> bool:
    """OP-65, OP-66, TX-19: a revocation cancels only a DTR handle of the same client and key;
    otherwise it silently has no effect (200 either way, RFC 7009). The hint only helps the AS
    route the request: RFC 7009 lets it search other token types, so it restricts nothing."""
    return owner.binding == "dtr" and _same_owner(owner, authority, request.client_id, request.auth_method, request.sender)
