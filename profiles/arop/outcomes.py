"""Resolution outcomes (spec/arop.md §5, OP-13..OP-18, OP-38, D-1..D-4): from the per-pair
decisions of one request to the one thing the sidecar does, and the pending answer of each
transport.

`choose` returns "allow" (build the grant, `grants.build_grant`), "defer" (open or reuse the
access request and answer `pending`), or the error outcome to relay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from profiles.arop import ciba, dtr, txn_challenge
from profiles.arop.errors import (
    INVALID_AUTHORIZATION_DETAILS,
    INVALID_REQUEST,
    INVALID_SCOPE,
)
from profiles.arop.model import (
    ApprovalObtainable,
    Binding,
    DecideRequest,
    DeliveryMode,
    OAuthError,
    Pending,
    Remediation,
    RetryWith,
)
from profiles.arop.vocabulary import Origin, Pair

Verdict = Literal["allow", "requestable", "deny"]
"""The PDP's answer for one pair: allow; deny with `context.access_request`; any other deny
(OP-13: without `context.access_request` a denial is not requestable, whatever else it says)."""

Choice = Literal["allow", "defer"] | OAuthError | Remediation

_DENIAL_CODES: dict[Origin, str] = {
    "authorization_details": INVALID_AUTHORIZATION_DETAILS,
    "scope": INVALID_SCOPE,
}


class PairDecision(msgspec.Struct, frozen=True):
    """One pair's verdict. `reveal` is the requestable permit's workflow setting
    (`reveal_to_clients`): may a client that did not opt in learn approval is possible?"""

    pair: Pair
    verdict: Verdict
    reveal: bool = True


def choose(request: DecideRequest, decisions: Sequence[PairDecision], *, retry_with: Sequence[RetryWith]) -> Choice:
    """§5 algorithm, the whole request as one unit (OP-38):

    1. any non-requestable pair → the synchronous error named by the first one's origin
       (OP-14; at the CIBA and txn endpoints too, D-3/D-4), never a deferred-path code (OP-15);
    2. else any requestable pair → requestable: without opt-in (`token`) the same error, or the
       remediation when every requestable workflow reveals and a retry transport exists
       (DESIGN §5, OP-18, OP-73); with opt-in, defer (OP-16) unless D-2 forbids it (a public
       client without DPoP, OP-47/OP-61, D-AROP-17);
    3. else allow.
    At the txn endpoint the validated challenge is itself the RS's requestable denial (OP-7):
    the AS's own allow does not lift it (OP-8, D-AROP-10), so allow counts as requestable.
    """
    if not decisions:
        raise ValueError("a request expands to at least one pair")
    denied = next((d for d in decisions if d.verdict == "deny"), None)
    if denied is not None:
        return denial_error(denied.pair.origin)
    requestable = [d for d in decisions if d.verdict == "requestable" or request.binding == "txn"]
    if not requestable:
        return "allow"
    if request.binding == "token":
        return _without_opt_in(requestable, retry_with)
    if request.client.public and request.sender.dpop_jkt is None:
        return OAuthError(status=400, error=INVALID_REQUEST, error_description="DPoP required for deferred completion")
    return "defer"


def denial_error(origin: Origin) -> OAuthError:
    """OP-14, OP-72: the code says which parameter was refused, the description nothing more.
    Also the answer when an access request cannot be opened for a requestable denial: the
    access is then not obtainable, and the client learns no more (OP-73)."""
    return OAuthError(status=400, error=_DENIAL_CODES[origin])


def _without_opt_in(requestable: Sequence[PairDecision], retry_with: Sequence[RetryWith]) -> OAuthError | Remediation:
    """OP-17, OP-46: never the deferred response without `completion_mode=deferred`."""
    refusal = denial_error(requestable[0].pair.origin)
    if not retry_with or not all(d.reveal for d in requestable):
        return refusal
    return Remediation(
        status=refusal.status,
        error=refusal.error,
        approval_obtainable=ApprovalObtainable(retry_with=list(retry_with)),
    )


def pending(
    binding: Binding, *, handle: str, expires_in: int, interval: int, delivery_mode: DeliveryMode | None = None
) -> Pending:
    """OP-16: the transport's own pending answer for a new or deduplicated handle: DTR's 400
    `authorization_pending` body (TX-9), CIBA's 200 (TX-21), the txn endpoint's 200 (TX-38)."""
    if binding == "dtr":
        response = dtr.pending_response(handle, expires_in, interval)
    elif binding == "ciba":
        if delivery_mode is None:
            raise ValueError("a CIBA answer depends on the delivery mode")
        response = ciba.accepted_response(handle, expires_in, interval, delivery_mode)
    elif binding == "txn":
        response = txn_challenge.accepted_response(handle, expires_in, interval)
    else:
        raise ValueError("a plain token request is never deferred (OP-17)")
    return Pending(handle=handle, expires_in=expires_in, interval=interval, response=response)
