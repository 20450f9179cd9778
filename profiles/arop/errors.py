"""OAuth error codes the sidecar answers with, and the exception a rule raises to answer one.

A rule that refuses raises `OAuthFailure`; the service turns it into the `OAuthError` outcome
the AS relays (RFC 6749 §5.2, TX-4). Codes are the transports' own (OP-1): nothing here is new.
"""

from __future__ import annotations

import re

from profiles.arop.model import OAuthError

INVALID_REQUEST = "invalid_request"
INVALID_GRANT = "invalid_grant"
INVALID_SCOPE = "invalid_scope"
INVALID_TARGET = "invalid_target"
INVALID_AUTHORIZATION_DETAILS = "invalid_authorization_details"
UNAUTHORIZED_CLIENT = "unauthorized_client"
INVALID_BINDING_MESSAGE = "invalid_binding_message"
ACCESS_DENIED = "access_denied"
AUTHORIZATION_PENDING = "authorization_pending"
SLOW_DOWN = "slow_down"
EXPIRED_TOKEN = "expired_token"

# TX-4, RFC 6749 §5.2: what error_description may not hold (it is NQSCHAR); OP-72: minimal.
_NOT_NQSCHAR = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_DESCRIPTION_MAX = 160

DEFERRED_PATH_ONLY = frozenset({AUTHORIZATION_PENDING, SLOW_DOWN, ACCESS_DENIED, EXPIRED_TOKEN})
"""OP-15: codes reserved for the deferred path, never a synchronous answer to a denial."""


class OAuthFailure(Exception):
    """A refusal the AS answers as an RFC 6749 §5.2 error (TX-4); `description` stays minimal
    and never names approvers or policies (OP-72)."""

    def __init__(self, error: str, description: str | None = None, *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> OAuthError:
        """TX-4, OP-72: a description may echo request text of any length (a challenge's `iss`
        or `kid`); whatever is not NQSCHAR becomes `?` and it is cut at 160 characters, so a
        hostile value can neither break the answer, smuggle quotes into it, nor bloat it."""
        if self.description is None:
            return OAuthError(status=self.status, error=self.error)
        description = _NOT_NQSCHAR.sub("?", self.description)
        if len(description) > _DESCRIPTION_MAX:
            description = description[: _DESCRIPTION_MAX - 3] + "..."
        return OAuthError(status=self.status, error=self.error, error_description=description)
