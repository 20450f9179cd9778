"""HTTP endpoints of the AS-facing sidecar (DESIGN.md §3, docs/integrating-an-as.md).

    POST /oauth/v1/decide           a token request as the AS saw it   → DecideResponse
    POST /oauth/v1/redeem           a poll of the deferred grant        → Allow | OAuthError
    POST /oauth/v1/cancel           a deferral-code revocation          → Relay (always 200)
    POST /oauth/v1/refresh-check    a refresh of a recorded grant       → Allow | OAuthError
    POST /oauth/v1/exchange-check   an exchange of a recorded grant     → Allow | OAuthError
    GET  /oauth/v1/metadata         what the AS advertises (OP-12)      → SidecarMetadata

Callers are Authorization Servers with the `oauth` scope. Every OAuth outcome is a 200 whose
body the AS relays as the tagged outcome says (profiles/arop/model.py); a malformed AS request
is an RFC 9457 problem (400) naming the member (D-AROP-1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from litestar import Request, Response, Router, get, post

from profiles.arop.model import CancelRequest, DecideRequest, ExchangeCheckRequest, RedeemRequest, RefreshCheckRequest
from services.auth import Caller
from services.http import authenticate, decode_json_body, json_response
from services.oauth.service import SidecarService

AnyRequest = Request[Any, Any, Any]
T = TypeVar("T")
NO_STORE = {"Cache-Control": "no-store"}


async def _call(request: AnyRequest, kind: type[T], operation: Callable[[SidecarService, Caller, T, datetime], Awaitable[Any]]) -> Response[bytes]:
    """Authenticate the AS, decode its JSON strictly into `kind`, run `operation` at one
    instant, answer JSON that nobody caches (it may hold a handle or a grant)."""
    caller = authenticate(request, "oauth")
    body = await decode_json_body(request, kind)
    service: SidecarService = request.app.state.oauth
    return json_response(await operation(service, caller, body, datetime.now(UTC)), headers=NO_STORE)


def _endpoint(path: str, name: str, kind: type[T], operation: Callable[[SidecarService, Caller, T, datetime], Awaitable[Any]], doc: str) -> Any:
    async def endpoint(request: AnyRequest) -> Response[bytes]:
        return await _call(request, kind, operation)

    endpoint.__doc__ = doc
    return post(path, name=name, status_code=200)(endpoint)


ENDPOINTS = [
    _endpoint("/oauth/v1/decide", "oauth-decide", DecideRequest, SidecarService.decide,
              "§5: allow with the grant to mint, an error, remediation, or pending with a handle."),
    _endpoint("/oauth/v1/redeem", "oauth-redeem", RedeemRequest, SidecarService.redeem,
              "§7-§9: a poll or redemption of a continuation handle."),
    _endpoint("/oauth/v1/cancel", "oauth-cancel", CancelRequest, SidecarService.cancel,
              "§14: a revocation the AS routed here (the deferral-code hint)."),
    _endpoint("/oauth/v1/refresh-check", "oauth-refresh-check", RefreshCheckRequest, SidecarService.refresh_check,
              "OP-35, OP-36: may the AS refresh a token that came from an approval, and with what?"),
    _endpoint("/oauth/v1/exchange-check", "oauth-exchange-check", ExchangeCheckRequest, SidecarService.exchange_check,
              "OP-35, D-AROP-14: may the AS exchange such a token, and for what?"),
]



@get("/oauth/v1/metadata", name="oauth-metadata")
async def metadata(request: AnyRequest) -> Response[bytes]:
    """OP-12, TX-37, TX-67: the transports served and the RFC 8414 members the AS publishes
    for them (it adds its own endpoint for each transport listed)."""
    authenticate(request, "oauth")
    service: SidecarService = request.app.state.oauth
    return json_response(service.metadata())


router = Router("/", route_handlers=[*ENDPOINTS, metadata])
