"""The Litestar application factory: one app mounting what the configuration enables."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar

from services import admin, ops
from services.access_requests import api as ars_api
from services.access_requests.delivery import CallbackDeliverer
from services.access_requests.service import AccessRequestService
from services.access_requests.worker import AccessRequestWorker
from services.auth import Authenticator
from services.config import Config, load_config
from services.http import EXCEPTION_HANDLERS, prepare_caller
from services.keys import KeyRing
from services.logs import configure_logging
from services.oauth import api as oauth_api
from services.oauth.service import SidecarService
from services.observability import RequestContextMiddleware
from services.pdp import api as pdp_api
from services.pdp.runtime import PolicyRuntime
from services.reviewer import pages as reviewer_pages
from services.store import create_store

log = logging.getLogger("arop")
PAGE_TOKEN_SECRET = "authzen-search-page-token"


class App(Litestar):
    """Litestar without the optional pydantic and attrs plugins it adds whenever those libraries
    happen to be installed: AROP's types are msgspec Structs, and the plugins would cost every
    worker ~10 MiB and start-up time for nothing (tests/test_app.py checks they stay out)."""

    @staticmethod
    def _get_default_plugins(plugins: list[Any]) -> list[Any]:
        from litestar.plugins.core import MsgspecDIPlugin

        plugins.append(MsgspecDIPlugin())
        return plugins


def create_app(config: Config) -> Any:
    """Build the ASGI application for `config`. Returns the app wrapped in the request-context
    middleware, which must see every response, including the framework's own errors."""
    store = create_store(config.store.url, pool_min=config.store.pool_min, pool_max=config.store.pool_max)
    runtime = PolicyRuntime(config.bundle_path(), store, reload_interval=config.policy.reload_interval, max_depth=config.server.max_json_depth)
    key_ring = KeyRing(store)
    access_requests = AccessRequestService(config, store, runtime, key_ring)
    changes = None
    if config.redis.url:  # imported only when used: redis-py costs every worker ~15 MiB
        from services.changes import ChangeFeed

        changes = ChangeFeed(config.redis.url)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await store.open()
        app.state.page_token_key = await store.get_or_create_secret(PAGE_TOKEN_SECRET, secrets.token_bytes(32))
        await runtime.start()
        if changes:
            changes.start(lambda topic: runtime.refresh())
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            if app.state.reviewer_ui is not None:
                await app.state.reviewer_ui.live.close()
            if changes:
                await changes.close()
            await runtime.stop()
            await store.close()

    ui = [reviewer_pages.router] if config.reviewer_ui.enabled else []
    app = App(
        route_handlers=[pdp_api.router(config), ars_api.router, oauth_api.router, admin.router, *ops.ROUTES, *ui],
        exception_handlers={**EXCEPTION_HANDLERS, **ars_api.EXCEPTION_HANDLERS},
        lifespan=[lifespan],
        # Callers with bearer JWTs: their issuers' keys are loaded before the handler runs.
        before_request=prepare_caller if any(caller.jwt for caller in config.callers) else None,
        openapi_config=None,
        request_max_body_size=config.server.max_body_bytes,
        logging_config=None,
        state=None,
    )
    app.state.config = config
    app.state.store = store
    app.state.runtime = runtime
    app.state.changes = changes
    app.state.authenticator = Authenticator(config.callers, config.reviewers, trusted_proxies=config.server.trusted_proxies)
    app.state.key_ring = key_ring
    app.state.access_requests = access_requests
    app.state.reviewer_ui = None  # built on the first page a worker serves (services/reviewer/pages.py)
    # The sidecar decides through the PDP's own decision path (services.pdp.decisions), which
    # reads the application state: it is made once the app exists, like the worker that
    # expires its handles (the lifespan starts the worker after this function returns).
    app.state.oauth = oauth = SidecarService(app, access_requests)
    worker = AccessRequestWorker(access_requests, CallbackDeliverer(store, config), oauth)
    return RequestContextMiddleware(app, access_log=config.logging.access_log)


def create_app_from_environment() -> Any:
    """Entry point for uvicorn worker processes: configuration comes from AROP_CONFIG and the
    AROP_* overrides that `arop serve` exported before starting them."""
    config = load_config()
    configure_logging(config.logging.level)
    return create_app(config)
