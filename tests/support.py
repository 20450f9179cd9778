"""Helpers shared by the test suites."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from services.store import Store, create_store

T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def poll(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether `condition` becomes true within `timeout` seconds (checked every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def on_store(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` on the store at `url` from the test process (a server may be using it too)."""

    async def run() -> T:
        store = create_store(url, pool_min=1, pool_max=2)
        await store.open(migrate=False)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def require_service(env_var: str, what: str) -> str:
    """Return the address of an external service the test needs.

    Locally a missing service skips the test; under CI=true it fails, because CI must run every
    integration test against the real service (.ci/run starts them).
    """
    value = os.environ.get(env_var, "")
    if value:
        return value
    message = f"{what} not configured: set {env_var}"
    if IN_CI:
        pytest.fail(f"{message} (CI forbids skipping integration tests)")
    pytest.skip(message)


def _with_search_path(dsn: str, schema: str) -> str:
    # asyncpg turns query parameters it does not know into server settings.
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), ("search_path", schema)])
    return urlunsplit(parts._replace(query=query))


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def fresh_postgres_schema() -> AsyncIterator[str]:
    """A PostgreSQL DSN whose tables live in a schema of their own, dropped afterwards."""
    dsn = require_service("TEST_POSTGRES_DSN", "PostgreSQL")
    schema = f"test_{secrets.token_hex(6)}"
    await _execute(dsn, f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(dsn, schema)
    finally:
        await _execute(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def fresh_postgres_schema_sync() -> Iterator[str]:
    """The same for synchronous tests (servers in subprocesses)."""
    dsn = require_service("TEST_POSTGRES_DSN", "PostgreSQL")
    schema = f"test_{secrets.token_hex(6)}"
    asyncio.run(_execute(dsn, f"CREATE SCHEMA {schema}"))
    try:
        yield _with_search_path(dsn, schema)
    finally:
        asyncio.run(_execute(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
