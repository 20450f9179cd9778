"""Versioned SQL migrations, one directory per dialect (`sqlite/`, `postgres/`).

A migration's version is its file stem (`0001_initial`); versions apply in lexical order and are
recorded in `schema_migrations`. Files ship as package data, so they are read through
importlib.resources rather than a path on disk.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import resources
from typing import NamedTuple


class Migration(NamedTuple):
    version: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """Every migration of `dialect`, in the order it must be applied."""
    directory = resources.files(__name__) / dialect
    if not directory.is_dir():
        raise ValueError(f"no migrations for store dialect {dialect!r}")
    files = sorted((f for f in directory.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def pending_migrations(dialect: str, applied: Collection[str]) -> list[Migration]:
    """The migrations of `dialect` not yet in `applied`, in the order to apply them."""
    return [m for m in load_migrations(dialect) if m.version not in applied]
