"""Client Challenge sessions in the store (oauth-transports.md TX-51, TX-52, TX-61): kept by
digest, readable until their follow-up takes them, once; purged when they expire unanswered. Every test
runs on SQLite and on PostgreSQL; several store instances on one database stand for several
processes or replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from profiles.client_challenge.challenge import ChallengeSession, Presenter, session_digest
from services.store import Store
from services.store.migrations import load_migrations
from tests.store.conftest import OpenStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def session(value: str, *, expires_at: datetime = T0 + timedelta(minutes=2)) -> ChallengeSession:
    return ChallengeSession(
        session_digest=session_digest(value), requirement_type="mandate", issued_to=Presenter("as-1", "trader-7", "private_key_jwt", "jkt:abc"),
        request_digest="r-1", expires_at=expires_at,
    )


def test_migration_0007_exists_for_both_dialects() -> None:
    for dialect in ("sqlite", "postgres"):
        assert load_migrations(dialect)[6].version == "0007_challenge_sessions"


async def test_tx_51_a_session_reads_back_whole_until_it_is_taken_once(store: Store) -> None:
    await store.create_challenge_session(session("cs-1"))
    assert await store.get_challenge_session(session_digest("cs-1")) == session("cs-1")
    assert await store.get_challenge_session(session_digest("cs-1")) == session("cs-1")  # reading takes nothing
    assert await store.take_challenge_session(session_digest("cs-1"))
    assert not await store.take_challenge_session(session_digest("cs-1"))  # answered: gone
    assert await store.get_challenge_session(session_digest("cs-1")) is None
    assert not await store.take_challenge_session(session_digest("never issued"))


async def test_tx_51_of_concurrent_follow_ups_exactly_one_takes_the_session(open_store: OpenStore) -> None:
    stores = [await open_store() for _ in range(4)]
    await stores[0].create_challenge_session(session("cs-race"))
    taken = await asyncio.gather(*(s.take_challenge_session(session_digest("cs-race")) for s in stores for _ in range(3)))
    assert sum(taken) == 1


async def test_tx_52_expired_sessions_are_purged_strictly_before(store: Store) -> None:
    for n, offset in enumerate([-2, -1, 0, 1]):
        await store.create_challenge_session(session(f"cs-{n}", expires_at=T0 + timedelta(seconds=offset)))
    assert await store.purge_challenge_sessions(T0) == 2
    assert await store.purge_challenge_sessions(T0) == 0
    assert [await store.take_challenge_session(session_digest(f"cs-{n}")) for n in range(4)] == [False, False, True, True]
