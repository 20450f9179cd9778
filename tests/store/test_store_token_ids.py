"""Remembered binding-token `jti`s (ARAP AR-26 step 3, with the §8.6 retry exception): a jti is
accepted once, again only by the same submission retried, and again by anyone once it expired.
Every test runs on SQLite and on PostgreSQL; several store instances on one database stand for
several processes or replicas."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.store import Store
from services.store.migrations import load_migrations
from tests.store.conftest import OpenStore

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
EXPIRES = T0 + timedelta(minutes=5)
JUST_AFTER = EXPIRES + timedelta(microseconds=1)


async def claim(store: Store, intent: str | None, *, jti: str = "j1", expires_at: datetime = EXPIRES, now: datetime = T0) -> bool:
    return await store.claim_token_id(jti, intent, expires_at, now)


def test_migration_0003_exists_for_both_dialects() -> None:
    for dialect, time_type in (("sqlite", "TEXT"), ("postgres", "TIMESTAMPTZ")):
        migration = load_migrations(dialect)[2]
        assert migration.version == "0003_token_ids"
        assert "CREATE TABLE token_ids (" in migration.sql
        assert re.search(r"\bjti\s+TEXT\s+PRIMARY KEY", migration.sql)
        assert re.search(r"\bintent\s+TEXT,", migration.sql)  # nullable
        assert re.search(rf"\bexpires_at\s+{time_type}\s+NOT NULL", migration.sql)


async def test_first_claim_is_accepted_and_remembered(store: Store) -> None:
    assert await claim(store, "intent-a")
    assert await claim(store, "intent-a", jti="j2")  # jtis are independent
    assert not await claim(store, "intent-b")


async def test_same_intent_is_a_retry_and_any_other_a_replay(store: Store) -> None:
    assert await claim(store, "intent-a")
    assert await claim(store, "intent-a", now=EXPIRES)  # a retry, even at the expiry instant
    assert not await claim(store, "intent-b")
    assert not await claim(store, None)
    # Refused claims change nothing: the first intent still retries.
    assert await claim(store, "intent-a")


async def test_without_intent_every_second_presentation_is_a_replay(store: Store) -> None:
    assert await claim(store, None)
    assert not await claim(store, None)
    assert not await claim(store, "intent-a")


async def test_expired_jti_is_replaced(store: Store) -> None:
    assert await claim(store, "intent-a")
    assert not await claim(store, "intent-b", now=EXPIRES)  # expires_at < now: not yet
    later = JUST_AFTER + timedelta(minutes=5)
    assert await claim(store, "intent-b", now=JUST_AFTER, expires_at=later)
    # The replacement is what is remembered now, with its own expiry.
    assert await claim(store, "intent-b", now=JUST_AFTER)
    assert not await claim(store, "intent-a", now=JUST_AFTER)
    assert not await claim(store, "intent-a", now=later)
    assert await claim(store, None, now=later + timedelta(microseconds=1))


async def test_a_retry_keeps_the_first_expiry(store: Store) -> None:
    assert await claim(store, "intent-a")
    assert await claim(store, "intent-a", expires_at=T0 + timedelta(days=1))
    assert await claim(store, "intent-b", now=JUST_AFTER)


async def test_times_in_other_zones_compare_as_instants(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    assert await claim(store, "intent-a", expires_at=EXPIRES.astimezone(paris))
    assert not await claim(store, "intent-b", now=EXPIRES.astimezone(timezone(timedelta(hours=-5))))
    assert await claim(store, "intent-b", now=JUST_AFTER.astimezone(paris))


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await claim(store, "intent-a", expires_at=datetime(2025, 1, 1, 12, 5))
    with pytest.raises(ValueError, match="timezone-aware"):
        await claim(store, "intent-a", now=datetime(2025, 1, 1, 12))
    assert await claim(store, "intent-b")  # nothing was remembered


async def test_purge_token_ids_deletes_strictly_before(store: Store) -> None:
    for n, offset in enumerate([-2, -1, 0, 1]):
        assert await claim(store, None, jti=f"j{n}", expires_at=T0 + timedelta(seconds=offset), now=T0 - timedelta(hours=1))

    assert await store.purge_token_ids(T0) == 2
    assert await store.purge_token_ids(T0) == 0
    # Purged jtis are forgotten, the others still refuse a replay.
    early = T0 - timedelta(hours=1)
    assert [await claim(store, "x", jti=f"j{n}", now=early) for n in range(4)] == [True, True, False, False]
    assert await store.purge_token_ids(T0 + timedelta(days=1)) == 4


async def test_concurrent_first_claims_exactly_one_wins(open_store: OpenStore) -> None:
    stores = [await open_store() for _ in range(3)]
    for round_ in range(15):
        jti = f"j{round_}"
        results = await asyncio.gather(*(claim(stores[n % 3], f"intent-{n}", jti=jti) for n in range(6)))
        assert results.count(True) == 1
        winner = f"intent-{results.index(True)}"
        # The winner's intent is the one remembered.
        assert await claim(stores[0], winner, jti=jti)
        assert not await claim(stores[1], f"intent-{results.index(False)}", jti=jti)


async def test_concurrent_claims_of_an_expired_jti_exactly_one_wins(open_store: OpenStore) -> None:
    stores = [await open_store() for _ in range(3)]
    for round_ in range(15):
        jti = f"j{round_}"
        assert await claim(stores[0], "old", jti=jti)
        results = await asyncio.gather(
            *(claim(stores[n % 3], f"intent-{n}", jti=jti, now=JUST_AFTER, expires_at=JUST_AFTER + timedelta(minutes=5)) for n in range(6))
        )
        assert results.count(True) == 1
        assert await claim(stores[1], f"intent-{results.index(True)}", jti=jti, now=JUST_AFTER)


async def test_concurrent_presentations_by_one_submission_are_all_accepted(open_store: OpenStore) -> None:
    stores = [await open_store() for _ in range(3)]
    for round_ in range(10):
        results = await asyncio.gather(*(claim(stores[n % 3], "intent-a", jti=f"j{round_}") for n in range(6)))
        assert results == [True] * 6
