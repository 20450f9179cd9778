"""OAuth error codes the sidecar answers with, and the exception a rule raises to answer one.

A rule that refuses raises `OAuthFailure`; the service turns it into the `OAuthError` outcome
the AS relays (RFC 6749 §5.2, TX-4). Codes are the transports' own (OP-1): nothing here is new.
"""

from __future__ import annotations

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
        return OAuthError(status=self.status, error=self.error, error_description=self.description)
