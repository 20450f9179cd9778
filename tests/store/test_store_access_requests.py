"""The access-request part of the store (ARAP): evaluations, tasks, idempotency keys, approvals,
the audit chain and callbacks. Every test runs on SQLite and on PostgreSQL (see conftest.py);
several store instances on one database stand for several processes or replicas."""

from __future__ import annotations

import asyncio
import math
import re
import signal
import sqlite3
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import msgspec
import pytest

from services.store import Store
from services.store.audit import verify_audit_chain
from services.store.migrations import load_migrations
from services.store.records import (
    GENESIS_HASH,
    ApprovalRecord,
    AuditDraft,
    AuditEvent,
    CallbackDelivery,
    EvaluationRecord,
    IdempotencyClaim,
    IdempotentTask,
    TaskCreation,
    TaskItem,
    TaskRecord,
    audit_hash,
)
from tests.store.conftest import OpenStore

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[2]
# A unique-key violation as each back end reports it.
DUPLICATE = (sqlite3.IntegrityError, asyncpg.UniqueViolationError)

# JSON values ARAP compares structurally: they must come back exactly as written.
TRICKY: dict[str, object] = {
    "int": 1,
    "float": 1.0,
    "negative_zero": -0.0,
    "huge_float": 1e100,
    "float_1e16": 1e16,
    "tenth": 0.1,
    "tiny": 1e-7,
    "big_int": 2**63,
    "bigger_int": 2**70,
    "null": None,
    "true": True,
    "empty_object": {},
    "empty_list": [],
    "nested": {"z": [1, 1.0, None, {"deep": [2.50, "x"]}], "a": {"null": None}},
    "unicode": "Zoë Ångström 東京 🚀 \u2028 \u0000 nul",
    "escapes": 'say "hi"\\ \n\t',
    "ключ": "значение",
}


def exact(value: object) -> bytes:
    """An encoding that tells 1 from 1.0, -0.0 from 0.0, null from absent, and key order."""
    return msgspec.json.encode(value)


def task(id_: str = "t1", **changes: object) -> TaskRecord:
    record = TaskRecord(
        id=id_,
        status="pending",
        requester="pep-1",
        subject={"type": "user", "id": "alice", "properties": {"level": 3}},
        context={"amount": 100.0},
        context_members=["amount"],
        items=[TaskItem(resource={"type": "portfolio", "id": "p1"}, action={"name": "buy"})],
        template="owner_approval",
        created_at=T0,
        updated_at=T0,
        expires_at=T0 + timedelta(days=1),
    )
    return msgspec.structs.replace(record, **changes)


def next_version(record: TaskRecord, **changes: object) -> TaskRecord:
    return msgspec.structs.replace(record, version=record.version + 1, **changes)


def claim(key: str = "k1", *, caller: str = "pep-1", fingerprint: str = "fp-a", expires_at: datetime | None = None) -> IdempotencyClaim:
    return IdempotencyClaim(
        caller=caller, key=key, fingerprint=fingerprint, expires_at=expires_at or T0 + timedelta(hours=24)
    )


def draft(kind: str = "task.created", task_id: str | None = "t1", **data: object) -> AuditDraft:
    return AuditDraft(at=T0, kind=kind, actor="pep-1", task_id=task_id, data=dict(data))


def approval(id_: str = "a1", task_id: str = "t1", **changes: object) -> ApprovalRecord:
    record = ApprovalRecord(
        id=id_,
        task_id=task_id,
        subject={"type": "user", "id": "alice"},
        resource={"type": "portfolio", "id": "p1"},
        action={"name": "buy"},
        context_members=["amount"],
        context_values={"amount": 100.0},
        requester="pep-1",
        approved_at=T0,
        approved_until=T0 + timedelta(hours=1),
    )
    return msgspec.structs.replace(record, **changes)


def callback(id_: str, task_id: str = "t1", *, at: datetime = T0, **changes: object) -> CallbackDelivery:
    record = CallbackDelivery(
        id=id_, task_id=task_id, caller="pep", event="task.completed", endpoint="https://pep.example/cb",
        body={"id": task_id, "status": "approved"}, next_attempt_at=at,
    )
    return msgspec.structs.replace(record, **changes)


def evaluation(id_: str = "e1", *, expires_at: datetime = T0 + timedelta(minutes=10), **changes: object) -> EvaluationRecord:
    record = EvaluationRecord(
        evaluation_id=id_,
        subject={"type": "user", "id": "alice"},
        resource={"type": "portfolio", "id": "p1"},
        action={"name": "buy"},
        context_members=["amount"],
        context_values={"amount": 100},
        template="owner_approval",
        created_at=T0,
        expires_at=expires_at,
    )
    return msgspec.structs.replace(record, **changes)


async def with_task(store: Store, record: TaskRecord | None = None) -> TaskRecord:
    record = record or task()
    created = await store.create_task(record, idempotency=None)
    assert created.created
    return created.task


async def all_callbacks_due(store: Store, now: datetime) -> list[str]:
    return sorted(d.id for d in await store.claim_callbacks(now, lease=timedelta(seconds=1), limit=1000))


def assert_chain(events: list[AuditEvent]) -> None:
    """Recompute every link and hash independently of verify_audit_chain."""
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    prev = GENESIS_HASH
    for event in events:
        assert event.prev_hash == prev
        body = AuditDraft(at=event.at, kind=event.kind, actor=event.actor, task_id=event.task_id, data=event.data)
        assert event.hash == audit_hash(body, event.seq, event.prev_hash)
        prev = event.hash
    assert verify_audit_chain(events) == []


# -- migrations -----------------------------------------------------------------------------


async def test_migrations_are_applied_in_order(store: Store) -> None:
    assert await store.applied_migrations() == [
        "0001_initial", "0002_access_requests", "0003_token_ids", "0004_continuation_handles",
        "0005_handle_dedup_index", "0006_handle_binding", "0007_challenge_sessions", "0008_reviewer_sessions",
    ]
    assert await store.migrate() == []
    assert await store.get_task("nothing") is None
    assert await store.audit_events() == []


def test_migration_0002_exists_for_both_dialects() -> None:
    for dialect in ("sqlite", "postgres"):
        migration = load_migrations(dialect)[1]
        assert migration.version == "0002_access_requests"
        for table in ("tasks", "approvals", "idempotency_keys", "audit_events", "audit_head", "callbacks"):
            assert f"CREATE TABLE {table} (" in migration.sql
    # Documents must keep their text: jsonb would re-type numbers.
    statements = [line for line in load_migrations("postgres")[1].sql.splitlines() if not line.startswith("--")]
    assert "JSONB" not in "\n".join(statements).upper()
    assert len(re.findall(r"\bdocument\s+JSON\s+NOT NULL", "\n".join(statements))) == 5


# -- evaluations ----------------------------------------------------------------------------


async def test_evaluation_round_trips_exactly(store: Store) -> None:
    record = evaluation(subject={"type": "user", "id": "ü", "properties": TRICKY}, context_values=TRICKY)
    await store.record_evaluation(record)
    stored = await store.get_evaluation("e1")
    assert stored == record
    assert stored is not None
    assert exact(stored) == exact(record)
    assert await store.get_evaluation("e2") is None


async def test_duplicate_evaluation_id_is_refused(store: Store) -> None:
    await store.record_evaluation(evaluation())
    with pytest.raises(DUPLICATE):
        await store.record_evaluation(evaluation(template="other"))
    assert (await store.get_evaluation("e1")) == evaluation()


async def test_purge_evaluations_deletes_strictly_before(store: Store) -> None:
    for n, offset in enumerate([-2, -1, 0, 1]):
        await store.record_evaluation(evaluation(f"e{n}", expires_at=T0 + timedelta(seconds=offset)))

    assert await store.purge_evaluations(T0) == 2
    assert [await store.get_evaluation(f"e{n}") is None for n in range(4)] == [True, True, False, False]
    assert await store.purge_evaluations(T0) == 0
    assert await store.purge_evaluations(T0 + timedelta(days=1)) == 2
    assert await store.get_evaluation("e3") is None


# -- tasks: round trips ---------------------------------------------------------------------


async def test_task_round_trips_exactly(store: Store) -> None:
    record = task(
        subject={"type": "user", "id": "алиса", "properties": TRICKY},
        context=TRICKY,
        context_members=list(TRICKY),
        items=[
            TaskItem(resource={"type": "doc", "id": "1", "properties": {"n": 1.0}}, action={"name": "read"}),
            TaskItem(
                resource={"type": "doc", "id": "2"}, action={"name": "write", "properties": {"n": 1}},
                status="approved", evaluation_id="e9", requested_access={"x": None}, approval_id="a9",
            ),
        ],
        bundle=True,
        requested_access={"duration": "PT1H", "null": None},
        client={"id": "agent", "cnf": {"jkt": "abc"}},
        callback={"uri": "https://pep.example/cb"},
        workflow={"steps": [{"approvers": ["bob"], "quorum": 1}], "decisions": []},
        version=0,
    )
    created = await store.create_task(record, idempotency=None)
    assert created == TaskCreation(record, True, True)

    stored = await store.get_task(record.id)
    assert stored == record
    assert exact(stored) == exact(record)
    assert stored is not None
    context = stored.context
    assert type(context["int"]) is int and type(context["float"]) is float
    assert math.copysign(1.0, context["negative_zero"]) == -1.0
    assert type(context["huge_float"]) is float and type(context["float_1e16"]) is float
    assert context["bigger_int"] == 2**70
    assert "null" in context and context["null"] is None
    assert "absent" not in context
    assert list(context) == list(TRICKY)


async def test_absent_and_null_stay_distinct(store: Store) -> None:
    with_null = task("t-null", context={"a": None}, client=None)
    without = task("t-absent", context={})
    await store.create_task(with_null, idempotency=None)
    await store.create_task(without, idempotency=None)
    assert (await store.get_task("t-null")).context == {"a": None}  # type: ignore[union-attr]
    assert (await store.get_task("t-absent")).context == {}  # type: ignore[union-attr]


async def test_task_datetimes_come_back_in_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    await store.create_task(task(created_at=local, updated_at=local, expires_at=local + timedelta(days=1)), idempotency=None)
    stored = await store.get_task("t1")
    assert stored is not None
    assert stored.created_at == local
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.created_at.hour == 12 and stored.created_at.microsecond == 123456
    # The indexed expiry column agrees with the document.
    assert [t.id for t in await store.list_tasks(expires_before=local + timedelta(days=1, microseconds=1))] == ["t1"]
    assert await store.list_tasks(expires_before=local + timedelta(days=1)) == []


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create_task(task(expires_at=datetime(2025, 1, 2)), idempotency=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.append_audit([AuditDraft(at=datetime(2025, 1, 1), kind="k", actor="a")])
    assert await store.get_task("t1") is None
    assert await store.audit_events() == []


async def test_get_unknown_task_and_duplicate_task_id(store: Store) -> None:
    assert await store.get_task("missing") is None
    await with_task(store)
    with pytest.raises(DUPLICATE):
        await store.create_task(task(status="other"), idempotency=None, audit=[draft()])
    assert await store.get_task("t1") == task()
    assert await store.audit_events() == []


async def test_create_task_chains_its_audit_events(store: Store) -> None:
    await store.create_task(task(), idempotency=None, audit=[draft("task.created"), draft("workflow.started")])
    events = await store.audit_events()
    assert [(e.seq, e.kind, e.task_id) for e in events] == [(1, "task.created", "t1"), (2, "workflow.started", "t1")]
    assert_chain(events)


async def test_create_task_inserts_its_approvals_and_callbacks_atomically(store: Store) -> None:
    """An auto-approved task is created approved: the task, its approval and its callback
    commit together, or (the key already bound) none of them."""
    created = await store.create_task(
        task(), idempotency=claim(), approvals=[approval()], callbacks=[callback("c1")], audit=[draft()]
    )
    assert created.created
    assert await store.get_approval("a1") == approval()
    assert [c.id for c in await store.claim_callbacks(T0, lease=timedelta(minutes=1))] == ["c1"]

    again = await store.create_task(
        task("t2"), idempotency=claim(), approvals=[approval("a2", "t2")], callbacks=[callback("c2", "t2")]
    )
    assert not again.created
    assert await store.get_approval("a2") is None
    assert await store.claim_callbacks(T0, lease=timedelta(minutes=1)) == []


# -- tasks: idempotency ---------------------------------------------------------------------


async def test_same_key_same_body_returns_the_first_task(store: Store) -> None:
    first = await store.create_task(task("t1"), idempotency=claim(), audit=[draft(task_id="t1")])
    again = await store.create_task(task("t2", status="other"), idempotency=claim(), audit=[draft(task_id="t2")])

    assert first == TaskCreation(task("t1"), True, True)
    assert again == TaskCreation(task("t1"), False, True)
    assert await store.get_task("t2") is None
    assert [e.task_id for e in await store.audit_events()] == ["t1"]


async def test_same_key_different_body_is_reported(store: Store) -> None:
    await store.create_task(task("t1"), idempotency=claim(fingerprint="fp-a"))
    again = await store.create_task(task("t2"), idempotency=claim(fingerprint="fp-b"))
    assert again == TaskCreation(task("t1"), False, False)
    assert await store.get_task("t2") is None
    # The stored fingerprint is still the first one.
    assert (await store.create_task(task("t3"), idempotency=claim(fingerprint="fp-a"))).same_body is True


async def test_same_key_from_another_caller_is_independent(store: Store) -> None:
    await store.create_task(task("t1"), idempotency=claim(caller="pep-1"))
    other = await store.create_task(task("t2"), idempotency=claim(caller="pep-2"))
    assert other == TaskCreation(task("t2"), True, True)
    assert (await store.create_task(task("t3"), idempotency=claim(caller="pep-2"))).task.id == "t2"
    assert (await store.create_task(task("t4"), idempotency=claim(caller="pep-1"))).task.id == "t1"
    assert (await store.create_task(task("t5"), idempotency=claim(key="k2"))).created is True


async def test_expired_key_is_replaced(store: Store) -> None:
    await store.create_task(task("t1"), idempotency=claim(expires_at=T0 + timedelta(hours=1), fingerprint="fp-a"))
    later = T0 + timedelta(hours=1)  # expires_at <= now: expired
    replaced = await store.create_task(
        task("t2", created_at=later, updated_at=later),
        idempotency=claim(expires_at=later + timedelta(hours=1), fingerprint="fp-b"),
    )
    assert replaced.created is True and replaced.same_body is True and replaced.task.id == "t2"
    assert await store.get_task("t1") == task("t1")  # the old task stays

    just_before = later + timedelta(hours=1) - timedelta(microseconds=1)
    again = await store.create_task(
        task("t3", created_at=just_before, updated_at=just_before), idempotency=claim(fingerprint="fp-a")
    )
    assert (again.task.id, again.created, again.same_body) == ("t2", False, False)
    assert await store.get_task("t3") is None


async def test_failed_create_does_not_keep_the_key(store: Store) -> None:
    await with_task(store, task("t1"))
    # The task id collides: the transaction fails after claiming the key, so the claim is undone.
    with pytest.raises(DUPLICATE):
        await store.create_task(task("t1", status="dup"), idempotency=claim("k9"), audit=[draft()])
    retried = await store.create_task(task("t2"), idempotency=claim("k9"))
    assert (retried.task.id, retried.created) == ("t2", True)
    assert await store.get_task("t1") == task("t1")
    assert await store.audit_events() == []


async def test_concurrent_creates_with_one_key_make_one_task(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    for round_ in range(15):
        key = f"k{round_}"
        attempts = [
            (first if n % 2 else second).create_task(
                task(f"t{round_}-{n}"), idempotency=claim(key), audit=[draft(task_id=f"t{round_}-{n}")]
            )
            for n in range(4)
        ]
        results = await asyncio.gather(*attempts)
        winners = [r for r in results if r.created]
        assert len(winners) == 1
        assert {r.task.id for r in results} == {winners[0].task.id}
        assert all(r.same_body for r in results)

    tasks = await first.list_tasks(limit=1000)
    assert len(tasks) == 15
    events = await second.audit_events()
    assert sorted(e.task_id for e in events) == sorted(t.id for t in tasks)  # type: ignore[type-var]
    assert_chain(events)


async def test_idempotent_task_finds_the_task_bound_to_an_unexpired_key(store: Store) -> None:
    assert await store.idempotent_task("pep-1", "k1", T0) is None
    expires_at = T0 + timedelta(hours=1)
    await store.create_task(task("t1"), idempotency=claim(fingerprint="fp-a", expires_at=expires_at))

    found = await store.idempotent_task("pep-1", "k1", T0)
    assert found == IdempotentTask(task("t1"), "fp-a")
    assert found is not None and exact(found.task) == exact(task("t1"))
    assert await store.idempotent_task("pep-2", "k1", T0) is None  # keys are scoped to the caller
    assert await store.idempotent_task("pep-1", "k2", T0) is None
    # Unexpired means expires_at after now, as for create_task's claim.
    assert await store.idempotent_task("pep-1", "k1", expires_at - timedelta(microseconds=1)) == found
    assert await store.idempotent_task("pep-1", "k1", expires_at) is None
    in_paris = expires_at.astimezone(timezone(timedelta(hours=2))) - timedelta(microseconds=1)
    assert await store.idempotent_task("pep-1", "k1", in_paris) == found


async def test_idempotent_task_follows_a_replaced_key_and_writes_nothing(store: Store) -> None:
    await store.create_task(task("t1"), idempotency=claim(expires_at=T0 + timedelta(hours=1)))
    later = T0 + timedelta(hours=2)
    assert await store.idempotent_task("pep-1", "k1", later) is None
    # The lookup claimed nothing: the expired key is still free to rebind.
    await store.create_task(
        task("t2", created_at=later, updated_at=later),
        idempotency=claim(fingerprint="fp-b", expires_at=later + timedelta(hours=1)),
    )
    assert await store.idempotent_task("pep-1", "k1", later) == IdempotentTask(
        task("t2", created_at=later, updated_at=later), "fp-b"
    )


async def test_idempotent_task_during_concurrent_creates_sees_all_or_nothing(open_store: OpenStore) -> None:
    writer, first, second = await open_store(), await open_store(), await open_store()
    for round_ in range(10):
        key, record = f"k{round_}", task(f"t{round_}")
        results = await asyncio.gather(
            *(reader.idempotent_task("pep-1", key, T0) for reader in (first, second, first)),
            writer.create_task(record, idempotency=claim(key)),
            *(reader.idempotent_task("pep-1", key, T0) for reader in (second, first, second)),
        )
        lookups = results[:3] + results[4:]
        assert all(found in (None, IdempotentTask(record, "fp-a")) for found in lookups)
        assert await first.idempotent_task("pep-1", key, T0) == IdempotentTask(record, "fp-a")


# -- tasks: updates -------------------------------------------------------------------------


async def test_update_task_with_expected_version(store: Store) -> None:
    original = await with_task(store)
    approved = next_version(original, status="approved", updated_at=T0 + timedelta(minutes=1))
    assert await store.update_task(
        approved, expected_version=0, approvals=[approval()], audit=[draft("task.approved")],
        callbacks=[callback("c1")],
    )
    assert await store.get_task("t1") == approved
    assert await store.get_approval("a1") == approval()
    assert [e.kind for e in await store.audit_events()] == ["task.approved"]
    assert await all_callbacks_due(store, T0) == ["c1"]

    # A stale writer changes nothing.
    stale = next_version(original, status="denied")
    assert not await store.update_task(
        stale, expected_version=0, approvals=[approval("a2")], audit=[draft("task.denied")],
        callbacks=[callback("c2")],
    )
    assert await store.get_task("t1") == approved
    assert await store.get_approval("a2") is None
    assert [e.kind for e in await store.audit_events()] == ["task.approved"]
    assert await all_callbacks_due(store, T0 + timedelta(hours=1)) == ["c1"]

    assert await store.update_task(next_version(approved, status="expired"), expected_version=1)
    assert (await store.get_task("t1")).version == 2  # type: ignore[union-attr]


async def test_update_unknown_task_is_false(store: Store) -> None:
    assert not await store.update_task(next_version(task("nope")), expected_version=0, audit=[draft()])
    assert await store.audit_events() == []


async def test_update_version_must_advance_by_one(store: Store) -> None:
    original = await with_task(store)
    for version in (0, 2):
        with pytest.raises(ValueError, match="expected_version"):
            await store.update_task(msgspec.structs.replace(original, version=version), expected_version=0)
    assert await store.get_task("t1") == original


async def test_concurrent_conflicting_updates_one_wins(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    for round_ in range(15):
        original = await with_task(first, task(f"t{round_}"))
        writers = [first, second, first, second]
        results = await asyncio.gather(
            *(
                writer.update_task(
                    next_version(original, status=f"s{n}"),
                    expected_version=0,
                    approvals=[approval(f"a{round_}-{n}", task_id=original.id)],
                    audit=[draft(f"k{n}", task_id=original.id)],
                    callbacks=[callback(f"c{round_}-{n}", task_id=original.id)],
                )
                for n, writer in enumerate(writers)
            )
        )
        assert results.count(True) == 1
        winner = results.index(True)
        stored = await second.get_task(original.id)
        assert stored == next_version(original, status=f"s{winner}")
        for n in range(4):
            assert (await first.get_approval(f"a{round_}-{n}") is not None) == (n == winner)

    events = await first.audit_events()
    assert len(events) == 15
    assert_chain(events)
    assert len(await all_callbacks_due(second, T0)) == 15


async def test_update_task_is_atomic_when_an_approval_id_collides(store: Store) -> None:
    original = await with_task(store)
    first = next_version(original, status="partially_approved")
    assert await store.update_task(first, expected_version=0, approvals=[approval("a1")], audit=[draft("one")])
    events_before = await store.audit_events()

    with pytest.raises(DUPLICATE):
        await store.update_task(
            next_version(first, status="approved"),
            expected_version=1,
            approvals=[approval("a2"), approval("a1", item_index=1)],  # a1 exists
            audit=[draft("two")],
            callbacks=[callback("c1")],
        )

    assert await store.get_task("t1") == first
    assert await store.get_approval("a2") is None
    assert await store.get_approval("a1") == approval("a1")
    assert await store.audit_events() == events_before
    assert await all_callbacks_due(store, T0 + timedelta(days=1)) == []
    # The chain head did not move either: the next event follows seq 1.
    [event] = await store.append_audit([draft("three")])
    assert event.seq == 2 and event.prev_hash == events_before[-1].hash


async def test_update_task_is_atomic_when_a_callback_id_collides(store: Store) -> None:
    original = await with_task(store)
    first = next_version(original)
    assert await store.update_task(first, expected_version=0, callbacks=[callback("c1")])
    with pytest.raises(DUPLICATE):
        await store.update_task(
            next_version(first, status="approved"), expected_version=1,
            approvals=[approval("a1")], audit=[draft()], callbacks=[callback("c1")],
        )
    assert await store.get_task("t1") == first
    assert await store.get_approval("a1") is None
    assert await store.audit_events() == []


# -- list_tasks -----------------------------------------------------------------------------


async def test_list_tasks_filters_and_pages(store: Store) -> None:
    for n in range(7):
        await with_task(
            store,
            task(f"t{n}", status="pending" if n % 2 == 0 else "approved", expires_at=T0 + timedelta(hours=n)),
        )
    ids = lambda tasks: [t.id for t in tasks]

    assert ids(await store.list_tasks()) == [f"t{n}" for n in range(7)]
    assert ids(await store.list_tasks(status="pending")) == ["t0", "t2", "t4", "t6"]
    assert ids(await store.list_tasks(expires_before=T0 + timedelta(hours=3))) == ["t0", "t1", "t2"]
    assert ids(await store.list_tasks(status="approved", expires_before=T0 + timedelta(hours=5))) == ["t1", "t3"]
    assert await store.list_tasks(status="unknown") == []

    pages, after = [], None
    while page := await store.list_tasks(status="pending", limit=3, after_id=after):
        pages.append(ids(page))
        after = page[-1].id
    assert pages == [["t0", "t2", "t4"], ["t6"]]
    assert ids(await store.list_tasks(limit=2, after_id="t4")) == ["t5", "t6"]
    assert (await store.list_tasks(limit=1))[0] == task("t0", expires_at=T0)


async def test_list_tasks_finds_pending_tasks_past_their_expiry(store: Store) -> None:
    """What an expiry sweep asks: pending tasks whose expires_at is strictly before now."""
    now = T0 + timedelta(hours=3)
    for n, (status, expires_at) in enumerate(
        [("pending", now - timedelta(hours=1)), ("approved", now - timedelta(hours=1)),
         ("pending", now), ("pending", now - timedelta(microseconds=1)), ("pending", now + timedelta(hours=1))]
    ):
        await with_task(store, task(f"t{n}", status=status, expires_at=expires_at))
    assert [t.id for t in await store.list_tasks(status="pending", expires_before=now)] == ["t0", "t3"]


# -- approvals ------------------------------------------------------------------------------


async def test_approval_round_trips_and_revocation(store: Store) -> None:
    original = await with_task(store)
    granted = approval(context_values=TRICKY, subject={"type": "user", "id": "ü", "n": 1.0}, evaluation_id="e1", item_index=0)
    assert await store.update_task(next_version(original, status="approved"), expected_version=0, approvals=[granted])
    stored = await store.get_approval("a1")
    assert stored == granted and exact(stored) == exact(granted)
    assert await store.get_approval("a9") is None

    revoked_at = T0 + timedelta(minutes=5)
    assert await store.revoke_approval("a1", revoked_at, audit=[draft("approval.revoked")])
    assert await store.get_approval("a1") == msgspec.structs.replace(granted, revoked_at=revoked_at)

    # The second revocation loses and changes nothing, nor does an unknown id.
    assert not await store.revoke_approval("a1", revoked_at + timedelta(minutes=1), audit=[draft("again")])
    assert not await store.revoke_approval("missing", revoked_at, audit=[draft("missing")])
    assert (await store.get_approval("a1")).revoked_at == revoked_at  # type: ignore[union-attr]
    assert [e.kind for e in await store.audit_events()] == ["approval.revoked"]


async def test_concurrent_revocations_one_wins(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    original = await with_task(first)
    approvals = [approval(f"a{n}") for n in range(10)]
    assert await first.update_task(next_version(original), expected_version=0, approvals=approvals)
    for n in range(10):
        results = await asyncio.gather(
            *(
                store.revoke_approval(f"a{n}", T0 + timedelta(seconds=i), audit=[draft("revoked", i=i)])
                for i, store in enumerate([first, second, second, first])
            )
        )
        assert results.count(True) == 1
        winner = results.index(True)
        assert (await second.get_approval(f"a{n}")).revoked_at == T0 + timedelta(seconds=winner)  # type: ignore[union-attr]
    events = await first.audit_events()
    assert len(events) == 10
    assert_chain(events)


# -- the audit chain ------------------------------------------------------------------------


async def test_append_audit_chains_from_genesis(store: Store) -> None:
    assert await store.append_audit([]) == []
    drafts = [draft("a", x=1), draft("b", task_id=None), AuditDraft(at=T0, kind="c", actor="admin", data=TRICKY)]
    appended = await store.append_audit(drafts)

    assert [e.seq for e in appended] == [1, 2, 3]
    assert appended[0].prev_hash == GENESIS_HASH
    assert appended[0].hash == audit_hash(drafts[0], 1, GENESIS_HASH)
    assert appended[1].prev_hash == appended[0].hash
    assert appended[2].hash == audit_hash(drafts[2], 3, appended[1].hash)
    assert appended[1].task_id is None

    stored = await store.audit_events()
    assert stored == appended
    assert exact(stored[2].data) == exact(TRICKY)
    assert_chain(stored)

    more = await store.append_audit([draft("d")])
    assert more[0].seq == 4 and more[0].prev_hash == appended[2].hash


async def test_audit_head_is_the_newest_chained_event(store: Store) -> None:
    assert await store.audit_head() == (0, GENESIS_HASH)
    appended = await store.append_audit([draft("a"), draft("b")])
    assert await store.audit_head() == (2, appended[-1].hash)

    original = await store.create_task(task(), idempotency=None, audit=[draft("task.created")])
    [created] = await store.audit_events(after_seq=2)
    assert await store.audit_head() == (3, created.hash)
    # Writes that chain nothing, or fail, leave the head alone.
    assert await store.update_task(next_version(original.task), expected_version=0)
    assert not await store.update_task(next_version(original.task), expected_version=0, audit=[draft("stale")])
    assert await store.append_audit([]) == []
    assert await store.audit_head() == (3, created.hash)


async def test_audit_events_pages_by_seq(store: Store) -> None:
    for n in range(7):
        await store.append_audit([draft(f"k{n}")])
    assert [e.seq for e in await store.audit_events(limit=3)] == [1, 2, 3]
    assert [e.seq for e in await store.audit_events(after_seq=3, limit=3)] == [4, 5, 6]
    assert [e.seq for e in await store.audit_events(after_seq=6)] == [7]
    assert await store.audit_events(after_seq=7) == []


async def test_audit_time_is_stored_in_utc_and_the_hash_covers_it(store: Store) -> None:
    local = datetime(2025, 6, 1, 14, 0, 0, 500, tzinfo=timezone(timedelta(hours=2)))
    [event] = await store.append_audit([AuditDraft(at=local, kind="k", actor="a", data={"t": (1, 2)})])
    [stored] = await store.audit_events()
    assert stored == event
    assert stored.at == local and stored.at.utcoffset() == timedelta(0)
    assert stored.data == {"t": [1, 2]}  # hashed as stored, not as passed
    assert_chain([stored])


async def test_concurrent_appends_from_two_instances_make_one_chain(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    original = await with_task(first)
    batches = [[draft(f"w{n}-{i}", n=n, i=i) for i in range(1 + n % 3)] for n in range(40)]
    writes = [(first if n % 2 else second).append_audit(batch) for n, batch in enumerate(batches)]
    # Task writes chain events too, interleaved with the plain appends.
    writes.append(first.update_task(next_version(original), expected_version=0, audit=[draft("update")]))
    results = await asyncio.gather(*writes)

    events = await second.audit_events(limit=10_000)
    total = sum(len(batch) for batch in batches) + 1
    assert len(events) == total
    assert_chain(events)
    # Each batch got consecutive seqs, in its order.
    for batch, appended in zip(batches, results[:-1]):
        assert [e.kind for e in appended] == [d.kind for d in batch]  # type: ignore[union-attr]
        seqs = [e.seq for e in appended]  # type: ignore[union-attr]
        assert seqs == list(range(seqs[0], seqs[0] + len(batch)))
        assert [events[s - 1] for s in seqs] == appended


# -- callbacks ------------------------------------------------------------------------------


async def test_callback_leasing_and_outcomes(store: Store) -> None:
    original = await with_task(store)
    queued = [
        callback("c-due", at=T0),
        callback("c-earlier", at=T0 - timedelta(minutes=1), body=TRICKY),
        callback("c-future", at=T0 + timedelta(minutes=5)),
    ]
    assert await store.update_task(next_version(original), expected_version=0, callbacks=queued)
    lease = timedelta(seconds=30)

    claimed = await store.claim_callbacks(T0, lease=lease)
    assert [d.id for d in claimed] == ["c-earlier", "c-due"]  # by next_attempt_at
    assert claimed[0] == msgspec.structs.replace(queued[1], lease_until=T0 + lease)
    assert exact(claimed[0].body) == exact(TRICKY)
    # Leased: nobody else gets them until the lease runs out (a lease ending now still holds).
    assert await store.claim_callbacks(T0 + lease, lease=lease) == []
    assert [d.id for d in await store.claim_callbacks(T0 + lease + timedelta(microseconds=1), lease=lease)] == [
        "c-earlier",
        "c-due",
    ]

    # Delivered: never again. Failed for good: never again. Retry: due again later, unleased.
    later = T0 + timedelta(hours=1)
    earlier, due = claimed
    await store.finish_callback(msgspec.structs.replace(earlier, attempts=1, delivered_at=T0))
    await store.finish_callback(
        msgspec.structs.replace(due, attempts=1, next_attempt_at=later, last_error="HTTP 503")
    )
    [future] = await store.claim_callbacks(later - timedelta(seconds=1), lease=lease)
    assert future.id == "c-future"
    await store.finish_callback(msgspec.structs.replace(future, attempts=1, delivered_at=later))
    [retry] = await store.claim_callbacks(later, lease=lease)
    assert retry == callback("c-due", at=later, attempts=1, last_error="HTTP 503", lease_until=later + lease)
    await store.finish_callback(msgspec.structs.replace(retry, attempts=2, failed_at=later, last_error="gone"))
    assert await store.claim_callbacks(later + timedelta(days=1), lease=lease) == []


async def test_claim_callbacks_respects_limit(store: Store) -> None:
    original = await with_task(store)
    queued = [callback(f"c{n}", at=T0 - timedelta(seconds=10 - n)) for n in range(5)]
    assert await store.update_task(next_version(original), expected_version=0, callbacks=queued)
    lease = timedelta(minutes=1)
    assert [d.id for d in await store.claim_callbacks(T0, lease=lease, limit=2)] == ["c0", "c1"]
    assert [d.id for d in await store.claim_callbacks(T0, lease=lease, limit=2)] == ["c2", "c3"]
    assert [d.id for d in await store.claim_callbacks(T0, lease=lease, limit=2)] == ["c4"]


async def test_finish_unknown_callback_is_an_error(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.finish_callback(callback("nope"), [draft("callback.delivered")])
    assert await store.audit_events() == []  # nothing written


async def test_finish_callback_chains_its_audit_event_in_the_same_transaction(store: Store) -> None:
    original = await with_task(store)
    assert await store.update_task(next_version(original), expected_version=0, callbacks=[callback("c1")])
    [claimed] = await store.claim_callbacks(T0, lease=timedelta(minutes=1))
    await store.finish_callback(msgspec.structs.replace(claimed, attempts=1, delivered_at=T0), [draft("callback.delivered")])
    events = await store.audit_events()
    assert [e.kind for e in events][-1] == "callback.delivered"
    assert_chain(events)


async def test_concurrent_claimers_never_share_a_delivery(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    original = await with_task(first)
    queued = [callback(f"c{n:02}", at=T0 - timedelta(seconds=n)) for n in range(40)]
    assert await first.update_task(next_version(original), expected_version=0, callbacks=queued)

    claims = await asyncio.gather(
        *((first if n % 2 else second).claim_callbacks(T0, lease=timedelta(minutes=1), limit=5) for n in range(12))
    )
    claimed = Counter(d.id for batch in claims for d in batch)
    assert set(claimed.values()) == {1}
    assert sorted(claimed) == sorted(d.id for d in queued)


# -- durability ---------------------------------------------------------------------------------

_WRITE_THEN_DIE = """
import asyncio, os, signal, sys
from datetime import UTC, datetime, timedelta
import msgspec
from services.store import create_store
from services.store import codec, postgres, sqlite
from services.store.records import AuditDraft, CallbackDelivery, TaskItem, TaskRecord

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

def die_when_chaining_crash(real):
    def chain(drafts, seq, prev):
        if any(d.kind == "crash" for d in drafts):
            # Inside update_task's transaction, after the task UPDATE and callback INSERT.
            print("dying", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(drafts, seq, prev)
    return chain

sqlite.chain_audit = die_when_chaining_crash(codec.chain_audit)
postgres.chain_audit = die_when_chaining_crash(codec.chain_audit)

async def main(url):
    store = create_store(url)
    await store.open()
    task = TaskRecord(
        id="t1", status="pending", requester="pep-1", subject={"type": "user", "id": "alice", "n": 1.0},
        items=[TaskItem(resource={"type": "doc", "id": "1"}, action={"name": "read"})],
        template="owner_approval", created_at=T0, updated_at=T0, expires_at=T0 + timedelta(days=1),
    )
    draft = AuditDraft(at=T0, kind="task.created", actor="pep-1", task_id="t1")
    await store.create_task(task, idempotency=None, audit=[draft])
    approved = msgspec.structs.replace(task, status="approved", version=1)
    cb = CallbackDelivery(id="c1", task_id="t1", caller="pep", event="done", endpoint="https://x", body={}, next_attempt_at=T0)
    assert await store.update_task(approved, expected_version=0, callbacks=[cb], audit=[draft])
    print("committed", flush=True)
    denied = msgspec.structs.replace(approved, status="denied", version=2)
    cb2 = msgspec.structs.replace(cb, id="c2")
    crash = msgspec.structs.replace(draft, kind="crash")
    await store.update_task(denied, expected_version=1, callbacks=[cb2], audit=[crash])
    print("survived", flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_killed_process_loses_nothing_committed_and_keeps_nothing_uncommitted(
    store_url: str, open_store: OpenStore
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITE_THEN_DIE, store_url, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert stdout.decode().split() == ["committed", "dying"]
    assert process.returncode == -signal.SIGKILL

    store = await open_store()
    stored = await store.get_task("t1")
    assert stored is not None
    assert (stored.status, stored.version, stored.subject) == ("approved", 1, {"type": "user", "id": "alice", "n": 1.0})
    assert type(stored.subject["n"]) is float
    events = await store.audit_events()
    assert [e.seq for e in events] == [1, 2]
    assert_chain(events)
    assert await all_callbacks_due(store, T0) == ["c1"]
    # The database is not left locked: the next writer proceeds and continues the chain.
    assert await store.update_task(next_version(stored, status="denied"), expected_version=1, audit=[draft("after")])
    assert_chain(await store.audit_events())


async def test_state_survives_close_and_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    original = await with_task(first)
    await first.create_task(task("t2"), idempotency=claim())
    assert await first.update_task(
        next_version(original, status="approved"), expected_version=0, approvals=[approval()],
        audit=[draft("approved")], callbacks=[callback("c1")],
    )
    await first.record_evaluation(evaluation())
    await first.close()

    reopened = await open_store()
    assert await reopened.migrate() == []
    assert (await reopened.get_task("t1")).status == "approved"  # type: ignore[union-attr]
    assert await reopened.get_approval("a1") == approval()
    assert await reopened.get_evaluation("e1") == evaluation()
    assert (await reopened.create_task(task("t3"), idempotency=claim())).task.id == "t2"
    assert_chain(await reopened.audit_events())
    assert await all_callbacks_due(reopened, T0) == ["c1"]
