"""What the client asked for, whatever the binding: the one input of the vocabulary expansion
(OP-40), the dedup key (§6) and the not-broader check at issuance (OP-4, OP-33).

For `token`, `dtr` and `ciba` it is the request's own `authorization_details`, `scope` and
`resource`; for `txn` it is the verified challenge's `authorization_details` and nothing else
(`txn_challenge.VerifiedChallenge.requested`, TX-42).
"""

from __future__ import annotations

import re

import msgspec

from profiles.arap.model import JSONObject
from profiles.arop.errors import INVALID_SCOPE, INVALID_TARGET, OAuthFailure
from profiles.arop.model import DecideRequest

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), tokens separated by one SP.
_TOKEN = r"[\x21\x23-\x5b\x5d-\x7e]+"
_SCOPE = re.compile(rf"{_TOKEN}(?: {_TOKEN})*")
# RFC 8707 §2, TX-68: a resource indicator is an absolute URI (RFC 3986 §4.3: a scheme, no
# fragment) of printable ASCII.
_RESOURCE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[!$-~]*")


class Requested(msgspec.Struct, frozen=True):
    """The requested authorization. `scope` holds the distinct tokens in request order."""

    authorization_details: tuple[JSONObject, ...] = ()
    scope: tuple[str, ...] = ()
    resource: tuple[str, ...] = ()


def is_scope_token(text: str) -> bool:
    """RFC 6749 §3.3: one scope token (no space, no `"` or `\\`, printable ASCII)."""
    return re.fullmatch(_TOKEN, text) is not None


def scope_tokens(scope: str | None) -> tuple[str, ...]:
    """RFC 6749 §3.3: the distinct scope tokens in order; a malformed value → invalid_scope.
    Scope is a set, so a repeated token means nothing more."""
    if scope is None:
        return ()
    if not _SCOPE.fullmatch(scope):
        raise OAuthFailure(INVALID_SCOPE, "malformed scope")
    return tuple(dict.fromkeys(scope.split(" ")))


def resource_indicators(resource: list[str]) -> tuple[str, ...]:
    """TX-68: each `resource` an absolute URI without a fragment, else invalid_target."""
    if not all(_RESOURCE.fullmatch(value) for value in resource):
        raise OAuthFailure(INVALID_TARGET, "resource must be an absolute URI without a fragment")
    return tuple(resource)


def requested_of(request: DecideRequest) -> Requested:
    """The client's own parameters; a txn request has none (use the verified challenge)."""
    if request.binding == "txn":
        raise ValueError("a txn request's operation comes from its verified challenge")
    return Requested(
        authorization_details=tuple(request.authorization_details or ()),
        scope=scope_tokens(request.scope),
        resource=resource_indicators(request.resource),
    )
