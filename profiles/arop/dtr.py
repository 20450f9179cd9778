"""Deferred Token Response (spec/arop.md §11.1, oauth-transports.md §2): the opt-in, the pending
body, the polling answer and the revocation hint. The DTR revision is pinned in configuration
(D-8); the names here are those AROP cites.
"""

from __future__ import annotations

from profiles.arop.errors import AUTHORIZATION_PENDING
from profiles.arop.model import OAuthError, Relay

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:deferred"
"""TX-12: the polling grant."""
DEFERRAL_CODE_HINT = "urn:ietf:params:oauth:token-type:deferral-code"
"""TX-19: the `token_type_hint` of a deferral revocation (the AS routes such revocations here)."""
DEFERRED = "deferred"


def completion_modes(value: str | None) -> frozenset[str]:
    """TX-6: `completion_mode` is a space-delimited list of values (an IANA registry; other
    profiles add e.g. `revisable`). Empty items from repeated spaces carry nothing."""
    return frozenset(item for item in (value or "").split(" ") if item)


def opted_in(value: str | None) -> bool:
    """OP-17, OP-46, TX-6: the client can handle a deferred answer only if it says `deferred`."""
    return DEFERRED in completion_modes(value)


def pending_response(deferral_code: str, expires_in: int, interval: int) -> Relay:
    """TX-9: the deferral is a 400 `authorization_pending` error carrying the handle; it grants
    nothing. `interval` is always sent (OP-29)."""
    return Relay(
        status=400,
        body={
            "error": AUTHORIZATION_PENDING,
            "deferral_code": deferral_code,
            "expires_in": expires_in,
            "interval": interval,
        },
    )


def pending_poll_error(interval: int) -> OAuthError:
    """TX-15: later pending answers repeat `interval` (so a raised one reaches the client) but
    not the code, which the client already holds."""
    return OAuthError(status=400, error=AUTHORIZATION_PENDING, interval=interval)
