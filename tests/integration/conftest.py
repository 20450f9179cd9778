"""The store fixtures of tests/store (a fresh database per test, on SQLite and PostgreSQL) for
the integration suites that work on a store directly."""

from tests.store.conftest import OpenStore, open_store, store, store_url  # noqa: F401 (fixtures)
