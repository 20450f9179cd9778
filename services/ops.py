"""Operational endpoints: liveness, readiness, Prometheus metrics, JWKS. No authentication:
they reveal nothing a caller could use against a decision."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get

from services.http import json_response
from services.observability import metrics_payload
from services.store import StoreUnavailable

AnyRequest = Request[Any, Any, Any]
READINESS_TIMEOUT = 2.0  # seconds: a store that does not answer by then is not ready


@get("/healthz")
async def healthz() -> Response[bytes]:
    """The process is alive and serving HTTP."""
    return json_response({"status": "ok"})


@get("/readyz")
async def readyz(request: AnyRequest) -> Response[bytes]:
    """Ready to decide: a policy version is loaded and the store answers."""
    runtime = request.app.state.runtime
    checks: dict[str, str] = {"policy": "ok" if runtime.engine else "not loaded"}
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            await request.app.state.store.ping()
        checks["store"] = "ok"
    except (StoreUnavailable, TimeoutError):
        checks["store"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    if runtime.engine:
        checks["policy_version"] = runtime.engine.bundle.version
    return json_response({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)


@get("/metrics")
async def metrics() -> Response[bytes]:
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)


@get("/.well-known/jwks.json")
async def jwks(request: AnyRequest) -> Response[bytes]:
    return json_response(await request.app.state.key_ring.jwks(), headers={"Cache-Control": "max-age=300"})


ROUTES = [healthz, readyz, metrics, jwks]
