"""CIBA in the sidecar (spec/arop.md §11.2, OP-49..OP-55; oauth-transports.md §3, TX-20..TX-28):
what a CIBA handle records about its delivery mode, and the notification its resolution queues.

The protocol rules are profiles.arop.ciba's. Here they meet the store: a ping or push handle keeps
its client's notification endpoint and `client_notification_token` (sealed, like the handle
itself, D-AROP-18) in `ContinuationHandle.notification`, and every write that resolves it queues
its notification as a `CallbackDelivery` in the same transaction (`SidecarService._write`), which
the access-request worker delivers with retries (services/access_requests/delivery.py). Nothing
is lost across restarts: the handle change and its notification commit together or not at all.

- ping (TX-26): `Authorization: Bearer <client_notification_token>` and `{"auth_req_id"}` to the
  client's endpoint, once: when the approval is in (the client then redeems), or when the request
  ends without one (denied, cancelled, expired). Never after the client redeemed by itself.
- push (TX-27, TX-28, OP-51): the AS mints and delivers, so the sidecar tells the AS
  ([oauth] push_endpoint, HMAC-signed with the AS caller's callback_secret) what to mint and
  where to deliver it; a push handle is issued by the worker's sweep (`notify_due`), never
  redeemed (unauthorized_client, TX-24).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import msgspec

from profiles.arop.ciba import PushError, ping_body, push_error_body, push_success
from profiles.arop.errors import UNAUTHORIZED_CLIENT, OAuthFailure
from profiles.arop.model import DecideRequest, DeliveryMode, Grant
from services.access_requests.delivery import CIBA_PUSH
from services.oauth.sealing import HandleSeal
from services.store.records import SEALED_HANDLE, CallbackDelivery, ContinuationHandle

CIBA_PING = "ciba.ping"
NOTIFIED = "notified"
"""`notification` member set by the write that queued a ping for an approval (sent once)."""
_PUSH_ERRORS: dict[str, PushError] = {"denied": "access_denied", "cancelled": "access_denied", "expired": "expired_token"}


def check_push(request: DecideRequest, push_endpoint: str) -> None:
    """OP-51: a push client's tokens are delivered by the AS; without a configured AS push
    endpoint the sidecar cannot have them delivered, so such a client is refused up front."""
    if request.ciba is not None and request.ciba.delivery_mode == "push" and not push_endpoint:
        raise OAuthFailure(UNAUTHORIZED_CLIENT, "push delivery is not configured")


def delivery_mode(record: ContinuationHandle) -> DeliveryMode | None:
    """The CIBA delivery mode recorded at origination (the client's registered one then)."""
    ciba = record.request.get("ciba") if record.binding == "ciba" else None
    return None if not isinstance(ciba, dict) else ciba.get("delivery_mode")


async def notification_of(request: DecideRequest, seal: HandleSeal) -> dict[str, Any] | None:
    """What a ping or push handle needs to notify later: mode, the client's endpoint and its
    notification token sealed (never stored in the clear). The handle's `authority`, the AS
    caller, is whose secret signs a push."""
    ciba = request.ciba
    if ciba is None or ciba.delivery_mode == "poll":
        return None
    assert ciba.client_notification_token is not None  # check_backchannel, OP-52
    return {
        "mode": ciba.delivery_mode,
        "endpoint": ciba.notification_endpoint,
        "token": await seal.seal(ciba.client_notification_token),
    }


def awaits_notice(record: ContinuationHandle) -> bool:
    """A pending ping or push handle whose resolution the worker still has to notice."""
    notification = record.notification or {}
    return record.binding == "ciba" and record.state == "pending" and notification.get("mode") in ("ping", "push") and not notification.get(NOTIFIED)


def approval_noticed(record: ContinuationHandle, now: datetime) -> ContinuationHandle:
    """The ping handle once its approval is in: still pending (the client redeems), marked so
    that the ping is queued by this write and never again."""
    return msgspec.structs.replace(record, notification={**(record.notification or {}), NOTIFIED: True}, updated_at=now)


def notifications(
    before: ContinuationHandle, after: ContinuationHandle, *, grant: dict[str, Any] | None, push_endpoint: str, now: datetime
) -> list[CallbackDelivery]:
    """The notification a handle write queues with itself: none unless it is the write that
    resolves a ping/push handle (or, for ping, notices its approval). The auth_req_id is
    written as SEALED_HANDLE and opened into the body only at delivery (OP-27)."""
    auth_req_id = SEALED_HANDLE
    if not awaits_notice(before) or (after.state == "issued" and delivery_mode(before) == "ping"):
        return []
    notification = before.notification or {}
    if notification["mode"] == "ping":
        if after.state == "pending" and not (after.notification or {}).get(NOTIFIED):
            return []
        return [_delivery(before, CIBA_PING, notification["endpoint"], ping_body(auth_req_id), now, auth="bearer")]
    if after.state == "pending":
        return []
    body: dict[str, Any] = {"auth_req_id": auth_req_id, "client_id": before.client_id, "notification_endpoint": notification["endpoint"]}
    if after.state == "issued":
        assert grant is not None
        push = push_success(auth_req_id, msgspec.convert(grant, Grant))
        body.update(outcome="allow", grant=grant, push=msgspec.to_builtins(push))
    else:
        body.update(outcome="error", push={"body": push_error_body(auth_req_id, _PUSH_ERRORS[after.state])})
    return [_delivery(before, CIBA_PUSH, push_endpoint, body, now, auth="hmac")]


def _delivery(record: ContinuationHandle, event: str, endpoint: str, body: dict[str, Any], now: datetime, *, auth: Any) -> CallbackDelivery:
    notification = record.notification or {}
    return CallbackDelivery(
        id="cb_" + secrets.token_urlsafe(16),
        task_id=record.task_id,
        caller=record.authority,
        event=event,
        endpoint=endpoint,
        body=body,
        next_attempt_at=now,
        auth=auth,
        sealed_token=notification["token"],
        sealed_handle=record.sealed_handle,
    )
