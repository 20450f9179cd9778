"""HTTP plumbing shared by every API: JSON responses, error shapes, caller authentication.

Error bodies follow the API they belong to: AuthZEN endpoints answer `{"error","message"}`
objects (authzen-api.md §8.4), the admin API RFC 9457 problem+json.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import msgspec
from litestar import Litestar, Request, Response, asgi
from litestar.exceptions import HTTPException
from litestar.handlers import ASGIRouteHandler

from profiles.authzen.errors import AuthZENError
from profiles.authzen.model import ErrorBody
from profiles.authzen.transport import describe_validation_error, media_type
from services.auth import AuthError, Authenticator, Caller, Scope
from services.store import StoreUnavailable

log = logging.getLogger("arop.http")
T = TypeVar("T")
encode = msgspec.json.Encoder().encode
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
WWW_AUTHENTICATE = 'Bearer realm="arop"'


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(encode(value), status_code=status, media_type=JSON, headers=headers)


class Problem(Exception):
    """An RFC 9457 problem for the non-AuthZEN APIs."""

    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.type = status, title, detail, type_

    def response(self) -> Response[bytes]:
        body = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if self.status == 401 else None
        return Response(encode(body), status_code=self.status, media_type=PROBLEM_JSON, headers=headers)


def require_json(request: Request[Any, Any, Any]) -> None:
    """A JSON API call outside AuthZEN sends application/json, else 415 (a problem)."""
    if media_type(request.headers.get("content-type")) != JSON:
        raise Problem(415, "Unsupported Media Type", "send application/json")


async def decode_json_body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """The body of a JSON API call outside AuthZEN as `type_`: 415 for another media type, a 400
    problem naming the member for a body that does not fit."""
    require_json(request)
    try:
        return msgspec.json.decode(await request.body(), type=type_)
    except msgspec.ValidationError as exc:
        raise Problem(400, "Bad Request", describe_validation_error(exc)) from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "Bad Request", f"the request body is not JSON: {exc}") from None


def authenticate(request: Request[Any, Any, Any], scope: Scope) -> Caller:
    """The caller of `request` allowed to use `scope`, or AuthError. A bearer JWT's keys were
    loaded by `prepare_caller`, the application's before-request hook."""
    authenticator: Authenticator = request.app.state.authenticator
    client = request.client.host if request.client else None
    client_cert = None
    if authenticator.uses_mtls:
        values = request.headers.getall("client-cert", [])
        client_cert = (values[0] if len(values) == 1 else "") if values else None
    return authenticator.authenticate(request.headers.get("authorization"), client, scope, client_cert)


async def prepare_caller(request: Request[Any, Any, Any]) -> None:
    """Before-request hook: load the JWK Set a caller's bearer JWT needs (Authenticator.prepare),
    so that the synchronous `authenticate` in the handler can verify it."""
    authenticator: Authenticator = request.app.state.authenticator
    if authenticator.uses_jwt:
        await authenticator.prepare(request.headers.get("authorization"))


class JsonPost(NamedTuple):
    """What a hot-path JSON endpoint needs from the HTTP request, read straight off ASGI:
    the authenticated caller, the media type and the body."""

    app: Litestar
    caller: Caller
    content_type: str | None
    body: bytes


JsonHandler = Callable[[JsonPost], Awaitable[bytes]]


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def json_post(path: str, *, name: str, requires: Scope) -> Callable[[JsonHandler], ASGIRouteHandler]:
    """A POST endpoint answering 200 application/json, as a raw ASGI route, for callers with
    the scope `requires`. The caller is authenticated before the body is read, so an unauthenticated client
    cannot make the service buffer bodies (AZ-55).

    The decision endpoints are the hot path: skipping the framework's request and response
    objects roughly halves their per-request overhead. Errors still travel as exceptions to the
    application's exception handlers, so every error keeps its spec shape.
    """

    def decorate(handler: JsonHandler) -> ASGIRouteHandler:
        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            if scope["method"] != "POST":
                raise HTTPException(status_code=405, detail="use POST", headers={"Allow": "POST"})
            authorization = content_type = client_cert = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    authorization = value.decode("latin-1")
                elif key == b"content-type":
                    content_type = value.decode("latin-1")
                elif key == b"client-cert":  # RFC 9440; sent twice: "" (refused)
                    client_cert = "" if client_cert is not None else value.decode("latin-1")
            app: Litestar = scope["litestar_app"]
            client = scope.get("client")
            authenticator: Authenticator = app.state.authenticator
            if authenticator.uses_jwt:
                await authenticator.prepare(authorization)
            caller = authenticator.authenticate(authorization, client[0] if client else None, requires, client_cert)
            body = await _read_body(receive, app.state.config.server.max_body_bytes)
            payload = await handler(JsonPost(app, caller, content_type, body))
            await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS + [(b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})

        endpoint.__doc__ = handler.__doc__
        return asgi(path, name=name, copy_scope=False)(endpoint)

    return decorate


_JSON_HEADERS = [(b"content-type", b"application/json")]


def _authzen_error(status: int, error: str, message: str) -> Response[bytes]:
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status == 401 else None
    return json_response(ErrorBody(error, message), status, headers)


def on_authzen_error(_: Request[Any, Any, Any], exc: AuthZENError) -> Response[bytes]:
    return _authzen_error(exc.status, exc.error, exc.message)


# The Access Request Service lives under /access/v1/ too, but answers RFC 9457 problems (AR-83).
_PROBLEM_PATHS = ("/access/v1/requests", "/access/v1/request-schemas/")


def is_authzen_path(path: str) -> bool:
    """Errors of the AuthZEN endpoints have the AuthZEN shape (authzen-api.md §8.4)."""
    return path.startswith("/access/") and not path.startswith(_PROBLEM_PATHS)


def on_auth_error(request: Request[Any, Any, Any], exc: AuthError) -> Response[bytes]:
    if is_authzen_path(request.url.path):
        return _authzen_error(exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.message)
    return Problem(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", exc.message).response()


def on_problem(_: Request[Any, Any, Any], exc: Problem) -> Response[bytes]:
    return exc.response()


_HTTP_ERRORS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """The framework's own errors (unknown path, wrong method, body too large) in our shapes.
    A too-large body on an AuthZEN endpoint is a 400-class problem of the request (§8.4)."""
    status = exc.status_code
    headers = dict(exc.headers or {})
    message = exc.detail or "error"
    if is_authzen_path(request.url.path):
        response = _authzen_error(status, _HTTP_ERRORS.get(status, "error"), message)
    else:
        response = Problem(status, message, message).response()
    response.headers.update(headers)
    return response


def on_store_unavailable(_: Request[Any, Any, Any], exc: StoreUnavailable) -> Response[bytes]:
    log.warning("store unavailable", extra={"error": str(exc)})
    return Problem(503, "Service Unavailable", "the store is unavailable; retry later").response()


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", extra={"path": request.url.path})
    if is_authzen_path(request.url.path):
        return _authzen_error(500, "server_error", "internal error")
    return Problem(500, "Internal Server Error", "internal error").response()


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    AuthZENError: on_authzen_error,
    AuthError: on_auth_error,
    Problem: on_problem,
    HTTPException: on_http_exception,
    StoreUnavailable: on_store_unavailable,
    Exception: on_unexpected,
}
