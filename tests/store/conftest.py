"""Fixtures giving every store test a clean database on each back end.

`store_url` names a fresh, empty database; `open_store` opens stores on it (several instances on
one database stand for several processes or replicas) and closes them after the test; `store` is
one opened, migrated store.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from services.store import Store, create_store
from tests.support import require_service

OpenStore = Callable[..., Awaitable[Store]]


def _with_search_path(dsn: str, schema: str) -> str:
    # asyncpg turns query parameters it does not know into server settings.
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), ("search_path", schema)])
    return urlunsplit(parts._replace(query=query))


@asynccontextmanager
async def _fresh_postgres_schema() -> AsyncIterator[str]:
    """A DSN whose tables live in a schema of their own, dropped after the test."""
    dsn = require_service("AROP_TEST_POSTGRES_DSN", "PostgreSQL")
    schema = f"test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield _with_search_path(dsn, schema)
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'arop.db'}"
    else:
        async with _fresh_postgres_schema() as url:
            yield url


@pytest.fixture
async def open_store(store_url: str) -> AsyncIterator[OpenStore]:
    opened: list[Store] = []

    async def open_(*, migrate: bool = True) -> Store:
        store = create_store(store_url, pool_min=1, pool_max=4)
        await store.open(migrate=migrate)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()
