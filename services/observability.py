"""Request ids and Prometheus metrics.

The request id middleware is plain ASGI (not a framework middleware) because it must wrap every
response, including the framework's own 404/405/413 answers (AZ-50), and cost next to nothing.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

from services.logs import request_id_var

log = logging.getLogger("arop")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"

# Generated request ids only correlate log lines: a per-process random prefix and a counter are
# unique without a getrandom(2) call per request.
_ID_PREFIX = secrets.token_hex(6).encode()
_id_counter = itertools.count(1)

DECISIONS = Counter("arop_decisions_total", "Decisions made, by API and outcome", ["api", "decision"])
HTTP_REQUESTS = Histogram(
    "arop_http_request_duration_seconds",
    "HTTP request latency by route and status class",
    ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
BUNDLE_RELOADS = Counter("arop_bundle_reloads_total", "Policy bundle reload attempts", ["result"])


@functools.lru_cache(maxsize=256)
def _latency(route: str, status_class: int) -> Any:
    # Resolving labels costs more than observing; routes and status classes are few.
    return HTTP_REQUESTS.labels(route, f"{status_class}xx")


@functools.lru_cache(maxsize=64)
def decision_counter(api: str, permit: bool) -> Any:
    return DECISIONS.labels(api, "permit" if permit else "deny")


class RequestContextMiddleware:
    """Echo the PEP's X-Request-ID on every response (AZ-50), generate one when absent (AZ-49
    allows it), expose it to logs, time the request, and optionally write an access log line."""

    def __init__(self, app: ASGIApp, *, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                request_id = value  # echoed unchanged (AZ-50); the HTTP server bounds header size
                break
        if request_id is None:
            request_id = b"%s-%x" % (_ID_PREFIX, next(_id_counter))
        token = request_id_var.set(request_id.decode("latin-1"))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            _latency(scope.get("path_template") or "unmatched", status // 100).observe(elapsed)
            if self.access_log:
                log.info(
                    "request",
                    extra={"method": scope["method"], "path": scope["path"], "status": status, "duration_ms": round(elapsed * 1000, 3)},
                )
            request_id_var.reset(token)


def metrics_payload() -> tuple[bytes, str]:
    """The Prometheus exposition, aggregated over every worker process when several serve."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST
