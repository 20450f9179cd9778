"""Reviewer UI sessions in the store: saved and replaced by digest, ended once, purged when
expired. Every test runs on SQLite and on PostgreSQL; several store instances on one database
stand for several replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.store import Store
from services.store.migrations import load_migrations
from services.store.records import OidcLogin, ReviewerSession, SignedIn
from tests.store.conftest import OpenStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def session(digest: str, *, expires_at: datetime = T0 + timedelta(hours=8), signed_in: SignedIn | None = None) -> ReviewerSession:
    return ReviewerSession(session_digest=digest, csrf_token="csrf-" + digest, created_at=T0, expires_at=expires_at, signed_in=signed_in)


def test_migration_0008_exists_for_both_dialects() -> None:
    for dialect in ("sqlite", "postgres"):
        assert load_migrations(dialect)[7].version == "0008_reviewer_sessions"


async def test_a_session_reads_back_whole_and_is_replaced_by_digest(store: Store) -> None:
    login = OidcLogin(state="s", nonce="n", code_verifier="v", next="/ui/")
    await store.save_reviewer_session(ReviewerSession(session_digest="d1", csrf_token="c", created_at=T0, expires_at=T0 + timedelta(minutes=10), oidc_login=login))
    assert (await store.get_reviewer_session("d1")).oidc_login == login
    alice = SignedIn(name="alice", entity_type="User", entity_id="alice", method="password")
    await store.save_reviewer_session(session("d1", signed_in=alice))
    assert await store.get_reviewer_session("d1") == session("d1", signed_in=alice)
    assert await store.get_reviewer_session("unknown") is None


async def test_of_concurrent_sign_ins_exactly_one_ends_the_session(open_store: OpenStore) -> None:
    stores = [await open_store() for _ in range(4)]
    await stores[0].save_reviewer_session(session("race"))
    ended = await asyncio.gather(*(s.delete_reviewer_session("race") for s in stores for _ in range(3)))
    assert sum(ended) == 1
    assert await stores[1].get_reviewer_session("race") is None


async def test_expired_sessions_are_purged_strictly_before(store: Store) -> None:
    for n, offset in enumerate([-2, -1, 0, 1]):
        await store.save_reviewer_session(session(f"p{n}", expires_at=T0 + timedelta(seconds=offset)))
    assert await store.purge_reviewer_sessions(T0) == 2
    assert [await store.get_reviewer_session(f"p{n}") is not None for n in range(4)] == [False, False, True, True]


async def test_a_tasks_audit_trail_reads_back_alone_in_chain_order(store: Store) -> None:
    from services.store.records import AuditDraft

    drafts = [AuditDraft(at=T0, kind=f"k{n}", actor="a", task_id=f"t{n % 2}", data={"n": n}) for n in range(5)]
    await store.append_audit(drafts)
    assert [e.data["n"] for e in await store.audit_events(task_id="t1")] == [1, 3]
    assert [e.data["n"] for e in await store.audit_events(task_id="t0", limit=2)] == [0, 2]
    assert len(await store.audit_events()) == 5
