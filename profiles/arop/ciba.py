"""CIBA Core 1.0 as AROP uses it (spec/arop.md §11.2, oauth-transports.md §3): the backchannel
request rules, its 200 answer, and the ping and push notification bodies.

Errors at the backchannel endpoint are CIBA's own codes; a policy denial there is D-4's
`invalid_authorization_details` / `invalid_scope`, never `access_denied` (OP-15).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import msgspec

from profiles.arap.discovery import is_https_or_loopback
from profiles.arap.model import JSONObject
from profiles.arop.errors import (
    INVALID_BINDING_MESSAGE,
    INVALID_REQUEST,
    INVALID_SCOPE,
    UNAUTHORIZED_CLIENT,
    OAuthFailure,
)
from profiles.arop.model import Ciba, DecideRequest, DeliveryMode, Grant, Relay
from profiles.arop.requested import scope_tokens

GRANT_TYPE = "urn:openid:params:grant-type:ciba"
"""TX-23: the polling grant of poll and ping clients."""
AUTH_REQ_ID_CLAIM = "urn:openid:params:jwt:claim:auth_req_id"
"""TX-27: the ID Token claim naming the request a push delivers."""
BINDING_MESSAGE_MAX = 64
"""D-AROP-11: a binding message is shown on two devices; keep it to one short line."""
_BINDING_CATEGORIES = ("L", "M", "N", "P", "S")
# RFC 6750 b64token: the notification token travels as `Authorization: Bearer <token>` (TX-26).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_NOTIFICATION_TOKEN_MAX = 1024
_EXPIRY = re.compile(r"[0-9]{1,9}")

PushError = Literal["access_denied", "expired_token", "transaction_failed"]


def check_backchannel(request: DecideRequest) -> int | None:
    """TX-20..TX-22, OP-50, OP-52, OP-53, D-AROP-16: a backchannel authentication request the sidecar can
    act on; returns the `requested_expiry` in seconds (None when not sent).

    Public client → unauthorized_client (CIBA has none). Not exactly one hint → invalid_request.
    No `openid` in scope → invalid_scope. A ping/push client without `client_notification_token`
    (or one unusable as a bearer token) → invalid_request, without a registered HTTPS
    notification endpoint → unauthorized_client. `requested_expiry` not a positive integer →
    invalid_request. `binding_message` too long or not plain text → invalid_binding_message.
    """
    ciba = _params(request)
    if request.client.public:
        raise OAuthFailure(UNAUTHORIZED_CLIENT, "CIBA requires an authenticated client")
    hints = [hint for hint in (ciba.login_hint, ciba.login_hint_token, ciba.id_token_hint) if hint is not None]
    if len(hints) != 1:
        raise OAuthFailure(INVALID_REQUEST, "send exactly one of login_hint, login_hint_token, id_token_hint")
    if "openid" not in scope_tokens(request.scope):
        raise OAuthFailure(INVALID_SCOPE, "scope must include openid")
    if ciba.delivery_mode != "poll":
        _check_notification(ciba)
    if ciba.binding_message is not None and not is_plain_binding_message(ciba.binding_message):
        raise OAuthFailure(INVALID_BINDING_MESSAGE)
    return _requested_expiry(ciba.requested_expiry)


def _params(request: DecideRequest) -> Ciba:
    if request.ciba is None:
        raise ValueError("not a ciba request")
    return request.ciba


def _check_notification(ciba: Ciba) -> None:
    """OP-52, TX-26: ping and push need the bearer token and the registered endpoint."""
    token = ciba.client_notification_token
    if token is None or len(token) > _NOTIFICATION_TOKEN_MAX or not _B64TOKEN.fullmatch(token):
        raise OAuthFailure(INVALID_REQUEST, "ping and push need a client_notification_token")
    endpoint = ciba.notification_endpoint
    if endpoint is None or not is_https_or_loopback(endpoint):
        raise OAuthFailure(UNAUTHORIZED_CLIENT, "no registered HTTPS client notification endpoint")


def _requested_expiry(value: int | str | None) -> int | None:
    """TX-22: a positive integer of seconds; the form value arrives as text."""
    if value is None:
        return None
    text = str(value) if type(value) is int else value
    if not isinstance(text, str) or not _EXPIRY.fullmatch(text) or int(text) == 0:
        raise OAuthFailure(INVALID_REQUEST, "requested_expiry must be a positive integer")
    return int(text)


def is_plain_binding_message(message: str) -> bool:
    """D-AROP-11: 1..BINDING_MESSAGE_MAX characters of letters, marks, digits, punctuation,
    symbols and the plain space; no control, format or line-breaking characters."""
    return 0 < len(message) <= BINDING_MESSAGE_MAX and all(
        char == " " or unicodedata.category(char).startswith(_BINDING_CATEGORIES) for char in message
    )


def accepted_response(auth_req_id: str, expires_in: int, interval: int, delivery_mode: DeliveryMode) -> Relay:
    """TX-21, OP-51: 200 with the handle and its lifetime; `interval` only for clients that
    poll (poll, ping), since a push client never calls the token endpoint."""
    body: JSONObject = {"auth_req_id": auth_req_id, "expires_in": expires_in}
    if delivery_mode != "push":
        body["interval"] = interval
    return Relay(status=200, body=body)


def ping_body(auth_req_id: str) -> JSONObject:
    """TX-26: the ping notification names the request and nothing else; the client then polls."""
    return {"auth_req_id": auth_req_id}


class PushSuccess(msgspec.Struct, frozen=True):
    """TX-27, OP-55: the push delivery of a grant. The sidecar fills `body`; the AS mints and
    adds `token_members` to it, and signs an ID Token carrying `id_token_claims` plus the
    hashes in `id_token_hashes` of what it minted (they depend on its signing algorithm)."""

    body: JSONObject
    token_members: tuple[str, ...]
    id_token_claims: JSONObject
    id_token_hashes: tuple[str, ...]


def push_success(auth_req_id: str, grant: Grant) -> PushSuccess:
    """TX-27, OP-55: the approved authorization and its bounded lifetime, ready for the AS's
    tokens; a refresh token only when the grant allows one (then also `rt_hash`)."""
    body: JSONObject = {"auth_req_id": auth_req_id, "expires_in": grant.expires_in}
    if grant.authorization_details is not None:
        body["authorization_details"] = grant.authorization_details
    if grant.scope is not None:
        body["scope"] = grant.scope
    refresh = ("refresh_token",) if grant.refresh_allowed else ()
    return PushSuccess(
        body=body,
        token_members=("access_token", "token_type", "id_token", *refresh),
        id_token_claims={AUTH_REQ_ID_CLAIM: auth_req_id},
        id_token_hashes=("at_hash", "rt_hash") if refresh else ("at_hash",),
    )


def push_error_body(auth_req_id: str, error: PushError, description: str | None = None) -> JSONObject:
    """TX-28: a push client learns a denial or expiry at its endpoint; the description stays
    minimal (OP-72)."""
    body: JSONObject = {"auth_req_id": auth_req_id, "error": error}
    if description is not None:
        body["error_description"] = description
    return body
