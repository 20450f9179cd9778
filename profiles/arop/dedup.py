"""Idempotent submission (spec/arop.md §6, OP-20, OP-60): the key under which a repeated
requestable request finds its pending handle, also sent as the ARAP `Idempotency-Key`.

The key is SHA-256 hex over the RFC 8785 canonical JSON array of its parts, so the framing is
unambiguous by construction (no part can run into the next) and a leading domain tag keeps the two
key forms and any later version apart.
"""

from __future__ import annotations

import hashlib
from typing import Any

from profiles.arap.jcs import canonicalize
from profiles.arop.errors import INVALID_AUTHORIZATION_DETAILS, OAuthFailure
from profiles.arop.model import DecideRequest, Sender
from profiles.arop.requested import Requested

_REQUEST_KEY = "arop-dedup-request-v1"
_TXN_KEY = "arop-dedup-txn-v2"
_PRESENTER = "arop-txn-presenter-v1"


def _digest(parts: list[Any]) -> str:
    return hashlib.sha256(canonicalize(parts)).hexdigest()


_JKT = "jkt:"
_X5T = "x5t#S256:"


def thumbprint(sender: Sender) -> str:
    """The sender-constraint key with its kind, so a `jkt` never collides with an `x5t#S256`;
    empty without a key. Also the form a handle records its key in (OP-62)."""
    if sender.dpop_jkt is not None:
        return _JKT + sender.dpop_jkt
    if sender.x5t_s256 is not None:
        return _X5T + sender.x5t_s256
    return ""


def sender_of(recorded: str | None) -> Sender:
    """The Sender a recorded `thumbprint` stands for (OP-62: later uses compare against it)."""
    if recorded and recorded.startswith(_JKT):
        return Sender(dpop_jkt=recorded.removeprefix(_JKT))
    if recorded and recorded.startswith(_X5T):
        return Sender(x5t_s256=recorded.removeprefix(_X5T))
    if recorded:
        raise ValueError(f"not a recorded key thumbprint: {recorded!r}")
    return Sender()


def _sorted_details(requested: Requested) -> list[str]:
    """Each `authorization_details` object as its JCS text, sorted: element order and member
    order do not change the request; every value does (D-ARAP-15)."""
    try:
        return sorted(canonicalize(element).decode("utf-8") for element in requested.authorization_details)
    except ValueError:
        raise OAuthFailure(INVALID_AUTHORIZATION_DETAILS, "authorization_details has no canonical JSON form") from None


def request_dedup_key(request: DecideRequest, requested: Requested, *, authority: str) -> str:
    """§6, D-6: AS ∥ client_id ∥ binding ∥ key thumbprint ∥ principal ∥ sorted JCS details ∥
    sorted scope tokens ∥ sorted resources. The principal is the subject's type and id with the
    acting chain (`act`): another agent acting for the same user is another request (D-AROP-6).
    `authority`, the AS, scopes the client id (D-AROP-29)."""
    return _digest(
        [
            _REQUEST_KEY,
            authority,
            request.client.id,
            request.binding,
            thumbprint(request.sender),
            [request.subject.type, request.subject.id],
            request.actor,
            _sorted_details(requested),
            sorted(requested.scope),
            sorted(set(requested.resource)),
        ]
    )


def presenter(request: DecideRequest, *, authority: str) -> str:
    """Who presents a transaction challenge (OP-60, TX-43, D-AROP-29): the AS, the client, its
    authentication method and its key. A `txn` belongs to its first presenter; the same client
    with another key or method is another presenter, as it could not redeem the handle anyway."""
    return _digest([_PRESENTER, authority, request.client.id, request.client.auth_method, thumbprint(request.sender)])


def txn_dedup_key(presenter: str, iss: str, txn: str) -> str:
    """§6, OP-60: presenter ∥ challenge `iss` ∥ `txn`: one access request per transaction."""
    return _digest([_TXN_KEY, presenter, iss, txn])


def idempotency_key(dedup_key: str, resolved_before: int) -> str:
    """§6, D-AROP-5: the ARAP `Idempotency-Key` of the access request behind a handle. The ARS
    keeps a key's task after it ends (D-ARAP-21), so the key counts the handles of this dedup key
    that already resolved: a retry after a crash recomputes the same key, a request after a
    terminal handle gets a new one and a new access request."""
    return f"{dedup_key}.{resolved_before}"
