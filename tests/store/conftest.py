"""Fixtures giving every store test a clean database on each back end.

`store_url` names a fresh, empty database; `open_store` opens stores on it (several instances on
one database stand for several processes or replicas) and closes them after the test; `store` is
one opened, migrated store; `tamper` changes that database behind the stores' back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from services.store import Store, create_store
from tests.support import fresh_postgres_schema

OpenStore = Callable[..., Awaitable[Store]]
Tamper = Callable[[str], Awaitable[None]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'arop.db'}"
    else:
        async with fresh_postgres_schema() as url:
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


@pytest.fixture
def tamper(store_url: str) -> Tamper:
    """Run one SQL statement on the test database directly, as someone with access to the
    database (not to the service) could."""

    async def execute(statement: str) -> None:
        if store_url.startswith("sqlite:///"):
            with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as db, db:
                db.execute(statement)
        else:
            connection = await asyncpg.connect(store_url)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

    return execute
