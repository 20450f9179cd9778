"""Continuation handles of the AS-facing sidecar (AROP §6-§9) and the grants their redemptions
issue: dedup of pending handles, redemption at most once, notifications queued with the state
change, listings for notification and expiry. Every test runs on SQLite and on PostgreSQL (see
conftest.py); several store instances on one database stand for several processes or replicas."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import msgspec
import pytest

from profiles.arop.handles import handle_digest
from services.store import (
    ContinuationHandle,
    HandleCreation,
    IssuedGrant,
    Store,
)
from services.store.migrations import load_migrations
from tests.store.conftest import OpenStore, Tamper
from tests.store.test_store_access_requests import (
    DUPLICATE,
    T0,
    TRICKY,
    all_callbacks_due,
    assert_chain,
    callback,
    draft,
    exact,
    task,
    with_task,
)

EXPIRES = T0 + timedelta(minutes=10)
PARIS = timezone(timedelta(hours=2))
# A reference to a task that does not exist, as each back end reports it.
NO_SUCH_TASK = (sqlite3.IntegrityError, asyncpg.ForeignKeyViolationError)


def handle(name: str = "h1", **changes: object) -> ContinuationHandle:
    """A pending CIBA handle of task t1; `name` stands for the handle the client holds."""
    record = ContinuationHandle(
        handle_digest=handle_digest(name),
        binding="ciba",
        authority="as-1",
        client_id="agent-42",
        client_auth="private_key_jwt",
        key_thumbprint="jkt:0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        dedup_key="dk-1",
        principal={"type": "user", "id": "bob"},
        task_id="t1",
        request={"scope": "openid", "authorization_details": [{"type": "db_admin", "actions": ["rotate"]}]},
        evaluations=[{"subject": {"type": "user", "id": "bob"}, "action": {"name": "rotate"}, "resource": {"type": "db", "id": "prod-eu"}}],
        state="pending",
        interval=5,
        expires_at=EXPIRES,
        created_at=T0,
        updated_at=T0,
    )
    return msgspec.structs.replace(record, **changes)


def advanced(record: ContinuationHandle, **changes: object) -> ContinuationHandle:
    return msgspec.structs.replace(record, version=record.version + 1, **changes)


def grant(grant_id: str = "g1", name: str = "h1", **changes: object) -> IssuedGrant:
    record = IssuedGrant(
        grant_id=grant_id,
        handle_digest=handle_digest(name),
        authority="as-1",
        client_id="agent-42",
        key_thumbprint="jkt:0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        subject={"type": "user", "id": "bob"},
        authorization_details=[{"type": "db_admin", "actions": ["rotate"]}],
        scope=["openid"],
        audience=["https://db.corp.example"],
        approval={"id": "a1", "approved_until": "2025-01-01T13:00:00Z", "state": "eyJ..."},
        approved_until=T0 + timedelta(hours=1),
        refresh_allowed=True,
        created_at=T0,
    )
    return msgspec.structs.replace(record, **changes)


async def with_handle(store: Store, record: ContinuationHandle | None = None) -> ContinuationHandle:
    """`record` (default `handle()`) created, with its task created first if need be."""
    record = record or handle()
    if await store.get_task(record.task_id) is None:
        await with_task(store, task(record.task_id))
    created = await store.create_handle(record)
    assert created.created
    return created.handle


# -- migration ------------------------------------------------------------------------------


def test_migration_0004_exists_for_both_dialects() -> None:
    for dialect, time_type in (("sqlite", "TEXT"), ("postgres", "TIMESTAMPTZ")):
        migration = load_migrations(dialect)[3]
        assert migration.version == "0004_continuation_handles"
        for table in ("continuation_handles", "issued_grants"):
            assert f"CREATE TABLE {table} (" in migration.sql
        assert re.search(r"\bhandle_digest\s+TEXT\s+PRIMARY KEY", migration.sql)
        assert re.search(r"\btask_id\s+TEXT\s+NOT NULL REFERENCES tasks \(id\)", migration.sql)
        assert re.search(rf"\bexpires_at\s+{time_type}\s+NOT NULL", migration.sql)
    # Documents must keep their text: jsonb would re-type numbers.
    statements = "\n".join(line for line in load_migrations("postgres")[3].sql.splitlines() if not line.startswith("--"))
    assert "JSONB" not in statements.upper()
    assert len(re.findall(r"\bdocument\s+JSON\s+NOT NULL", statements)) == 2


# -- round trips and refusals ---------------------------------------------------------------



async def test_migration_0005_every_handle_of_a_dedup_key_is_found_through_an_index(store: Store, store_url: str) -> None:
    """OP-20: `handles_for_dedup_key` runs on every decide; it must not scan the table."""
    query = "SELECT document FROM continuation_handles WHERE dedup_key = 'k' ORDER BY handle_digest"
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN " + query))
        assert "USING INDEX continuation_handles_dedup_key" in plan, plan
    else:
        connection = await asyncpg.connect(store_url)
        try:
            await connection.execute("SET enable_seqscan = off")  # an empty table: ask what it could use
            plan = " ".join(row[0] for row in await connection.fetch("EXPLAIN " + query))
        finally:
            await connection.close()
        assert "continuation_handles_dedup_key" in plan, plan

async def test_handle_round_trips_exactly(store: Store) -> None:
    record = handle(
        principal={"type": "user", "id": "bøb", "properties": TRICKY},
        request=TRICKY,
        evaluations=[{"context": TRICKY}, {"n": 1}],
        notification={"mode": "push", "endpoint": "https://agent42.example/ciba", "client_notification_token": "cnt_3Vb"},
        approval={"id": "a1", "until": None, "n": 1.0},
        last_poll_at=T0 + timedelta(seconds=5),
        key_thumbprint=None,
    )
    created = await with_handle(store, record)
    assert created == record

    stored = await store.get_handle(record.handle_digest)
    assert stored == record and stored is not None
    assert exact(stored) == exact(record)
    assert type(stored.request["int"]) is int and type(stored.request["float"]) is float
    assert stored.approval == {"id": "a1", "until": None, "n": 1.0} and type(stored.approval["n"]) is float
    assert "absent" not in stored.request and stored.request["null"] is None
    assert stored.key_thumbprint is None
    assert await store.get_handle(handle_digest("unknown")) is None


async def test_txn_handle_keeps_its_challenge(store: Store) -> None:
    record = handle(binding="txn", txn_issuer="https://rs.example", txn="txn-7", notification=None)
    await with_handle(store, record)
    stored = await store.get_handle(record.handle_digest)
    assert stored is not None and (stored.binding, stored.txn_issuer, stored.txn) == ("txn", "https://rs.example", "txn-7")


async def test_the_handle_itself_is_never_stored(store: Store) -> None:
    """Only a SHA-256 hex digest is accepted as the key (OP-27): passing the handle is refused."""
    await with_task(store)
    for key in ("Zt8pQ1mW4xR7nV2cK9bL6sD3fG0hJ5aE", handle_digest("h1").upper(), handle_digest("h1")[:-1]):
        with pytest.raises(ValueError, match="SHA-256"):
            await store.create_handle(handle(handle_digest=key), audit=[draft("handle.created")])
    assert await store.list_handles() == []
    assert await store.audit_events() == []


async def test_records_that_would_not_read_back_are_refused(store: Store) -> None:
    await with_task(store)
    for bad in (handle(state="approved"), handle(binding="device"), handle(interval=5.5)):  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="would not read back"):
            await store.create_handle(bad)
    assert await store.list_handles() == []
    original = await with_handle(store)
    with pytest.raises(ValueError, match="would not read back"):
        await store.update_handle(advanced(original, state="done"), expected_version=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="would not read back"):
        await store.update_handle(
            advanced(original, state="issued"), expected_version=0, grants=[grant(refresh_allowed="yes")]  # type: ignore[arg-type]
        )
    assert await store.get_handle(original.handle_digest) == original


async def test_duplicate_digest_and_unknown_task_are_refused(store: Store) -> None:
    original = await with_handle(store)
    with pytest.raises(DUPLICATE):
        await store.create_handle(handle(dedup_key="dk-2", interval=9), audit=[draft("handle.created")])
    with pytest.raises(NO_SUCH_TASK):
        await store.create_handle(handle("h2", dedup_key="dk-3", task_id="missing"), audit=[draft("handle.created")])
    assert await store.get_handle(original.handle_digest) == original
    assert await store.get_handle(handle_digest("h2")) is None
    assert await store.audit_events() == []


async def test_create_handle_chains_its_audit_events(store: Store) -> None:
    await with_task(store)
    created = await store.create_handle(handle(), audit=[draft("handle.created", binding="ciba")])
    assert created == HandleCreation(handle(), True)
    events = await store.audit_events()
    assert [(e.kind, e.data) for e in events] == [("handle.created", {"binding": "ciba"})]
    assert_chain(events)


async def test_handle_datetimes_come_back_in_utc(store: Store) -> None:
    local = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=PARIS)
    record = handle(created_at=local, updated_at=local, expires_at=local + timedelta(minutes=10), last_poll_at=local)
    await with_handle(store, record)
    stored = await store.get_handle(record.handle_digest)
    assert stored is not None and stored == record
    assert all(t.utcoffset() == timedelta(0) for t in (stored.created_at, stored.expires_at, stored.last_poll_at))  # type: ignore[union-attr]
    assert stored.created_at.hour == 12 and stored.created_at.microsecond == 123456
    # The indexed expiry column agrees with the document.
    expiry = local + timedelta(minutes=10)
    assert await store.list_handles(expires_before=expiry) == []
    assert await store.list_handles(expires_before=(expiry + timedelta(microseconds=1)).astimezone(UTC)) == [stored]


async def test_naive_datetimes_are_refused(store: Store) -> None:
    original = await with_handle(store)
    naive = datetime(2025, 1, 1, 12, 5)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create_handle(handle("h2", dedup_key="dk-2", expires_at=naive))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.update_handle(advanced(original, last_poll_at=naive), expected_version=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.update_handle(
            advanced(original, state="issued"), expected_version=0, grants=[grant(approved_until=naive)]
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.list_handles(expires_before=naive)
    assert await store.get_handle(handle_digest("h2")) is None
    assert await store.get_handle(original.handle_digest) == original
    assert await store.get_grant("g1") is None


# -- dedup (OP-20) --------------------------------------------------------------------------


async def test_a_pending_unexpired_handle_is_returned_instead_of_a_new_one(store: Store) -> None:
    first = await with_handle(store)
    later = T0 + timedelta(minutes=1)
    again = await store.create_handle(
        handle("h2", created_at=later, updated_at=later, expires_at=later + timedelta(minutes=10)),
        audit=[draft("handle.created")],
    )
    assert again == HandleCreation(first, False)
    assert await store.get_handle(handle_digest("h2")) is None
    assert await store.audit_events() == []  # nothing written
    # Another dedup key (another client, key, request...) gets its own handle.
    other = await store.create_handle(handle("h3", dedup_key="dk-2"))
    assert other.created and other.handle.handle_digest == handle_digest("h3")


async def test_an_expired_pending_handle_does_not_dedup(store: Store) -> None:
    """Unexpired means `expires_at` after the new handle's `created_at`: at the instant of expiry
    a new handle is created, while the old one stays pending for the expiry worker."""
    first = await with_handle(store)
    just_before = EXPIRES - timedelta(microseconds=1)
    deduped = await store.create_handle(handle("h2", created_at=just_before, expires_at=EXPIRES + timedelta(minutes=10)))
    assert deduped == HandleCreation(first, False)

    replacement = handle("h3", created_at=EXPIRES, updated_at=EXPIRES, expires_at=EXPIRES + timedelta(minutes=10))
    assert await store.create_handle(replacement) == HandleCreation(replacement, True)
    assert await store.get_handle(first.handle_digest) == first  # still pending
    # The replacement is what dedups now (the one living longest when both are unexpired).
    assert (await store.create_handle(handle("h4", created_at=just_before))).handle == replacement


async def test_times_in_other_zones_compare_as_instants_for_dedup(store: Store) -> None:
    first = await with_handle(store, handle(expires_at=EXPIRES.astimezone(PARIS)))
    assert (await store.create_handle(handle("h2", created_at=(EXPIRES - timedelta(microseconds=1)).astimezone(PARIS)))).handle == first
    new_york = timezone(timedelta(hours=-5))
    assert (await store.create_handle(handle("h3", created_at=EXPIRES.astimezone(new_york)))).created


@pytest.mark.parametrize("terminal", ["issued", "denied", "cancelled", "expired"])
async def test_terminal_handles_never_dedup(store: Store, terminal: str) -> None:
    """Once terminal, a repeated request opens a new access request (§6)."""
    first = await with_handle(store)
    assert await store.update_handle(advanced(first, state=terminal), expected_version=0)
    created = await store.create_handle(handle("h2"))
    assert created == HandleCreation(handle("h2"), True)


async def test_concurrent_creators_with_one_dedup_key_make_one_handle(open_store: OpenStore) -> None:
    stores = [await open_store() for _ in range(3)]
    for round_ in range(10):
        await with_task(stores[0], task(f"t{round_}"))
        attempts = [
            stores[n % 3].create_handle(
                handle(f"h{round_}-{n}", dedup_key=f"dk{round_}", task_id=f"t{round_}"),
                audit=[draft("handle.created", task_id=f"t{round_}", n=n)],
            )
            for n in range(6)
        ]
        results = await asyncio.gather(*attempts)
        winners = [r.handle for r in results if r.created]
        assert len(winners) == 1
        assert all(r.handle == winners[0] for r in results)
        assert [h.handle_digest for h in await stores[1].handles_for_task(f"t{round_}")] == [winners[0].handle_digest]
    events = await stores[2].audit_events()
    assert len(events) == 10
    assert_chain(events)


# -- updates: polls, redemption at most once, notifications ---------------------------------


async def test_update_handle_with_expected_version(store: Store) -> None:
    original = await with_handle(store)
    polled = advanced(original, last_poll_at=T0 + timedelta(seconds=3), interval=10, updated_at=T0 + timedelta(seconds=3))
    assert await store.update_handle(polled, expected_version=0, audit=[draft("handle.slow_down")])
    assert await store.get_handle(original.handle_digest) == polled

    # A stale writer changes nothing: no state, no grant, no callback, no audit event.
    stale = advanced(original, state="issued", grant_id="g1")
    assert not await store.update_handle(
        stale, expected_version=0, audit=[draft("handle.issued")], callbacks=[callback("c1")], grants=[grant()]
    )
    assert await store.get_handle(original.handle_digest) == polled
    assert await store.get_grant("g1") is None
    assert await all_callbacks_due(store, T0 + timedelta(days=1)) == []
    assert [e.kind for e in await store.audit_events()] == ["handle.slow_down"]

    assert await store.update_handle(advanced(polled, state="denied"), expected_version=1)
    assert (await store.get_handle(original.handle_digest)).version == 2  # type: ignore[union-attr]


async def test_update_unknown_handle_is_false(store: Store) -> None:
    await with_task(store)
    assert not await store.update_handle(advanced(handle()), expected_version=0, audit=[draft()])
    assert await store.audit_events() == []


async def test_update_version_must_advance_by_one(store: Store) -> None:
    original = await with_handle(store)
    for version in (0, 2):
        with pytest.raises(ValueError, match="expected_version"):
            await store.update_handle(msgspec.structs.replace(original, version=version), expected_version=0)
    assert await store.get_handle(original.handle_digest) == original


async def test_terminal_states_never_change(store: Store) -> None:
    original = await with_handle(store)
    issued = advanced(original, state="issued", grant_id="g1")
    assert await store.update_handle(issued, expected_version=0, grants=[grant()])
    for state in ("pending", "denied", "cancelled", "expired"):
        with pytest.raises(ValueError, match="terminal state 'issued'"):
            await store.update_handle(
                advanced(issued, state=state), expected_version=1, audit=[draft()], callbacks=[callback("c1")]
            )
    assert await store.get_handle(original.handle_digest) == issued
    assert await store.audit_events() == []
    assert await all_callbacks_due(store, T0 + timedelta(days=1)) == []
    # Other members of a terminal handle may still change, and a stale writer still just loses.
    touched = advanced(issued, last_poll_at=T0 + timedelta(minutes=1))
    assert await store.update_handle(touched, expected_version=1)
    assert not await store.update_handle(advanced(issued, state="denied"), expected_version=1)
    assert await store.get_handle(original.handle_digest) == touched


async def test_a_grant_for_another_handle_is_refused(store: Store) -> None:
    original = await with_handle(store)
    with pytest.raises(ValueError, match="another handle"):
        await store.update_handle(advanced(original, state="issued"), expected_version=0, grants=[grant(name="h2")])
    assert await store.get_handle(original.handle_digest) == original


async def test_redemption_records_its_grant_in_the_same_transaction(store: Store) -> None:
    original = await with_handle(store)
    issued = advanced(original, state="issued", grant_id="g1", approval={"id": "a1"})
    assert await store.update_handle(issued, expected_version=0, grants=[grant()], audit=[draft("handle.issued")])
    assert await store.get_grant("g1") == grant()
    assert await store.get_grant("g2") is None

    # A grant that cannot be recorded (its id is taken) undoes the state change with it.
    other = await with_handle(store, handle("h2", dedup_key="dk-2"))
    with pytest.raises(DUPLICATE):
        await store.update_handle(
            advanced(other, state="issued", grant_id="g1"), expected_version=0, grants=[grant("g1", "h2")],
            callbacks=[callback("c1")], audit=[draft("handle.issued")],
        )
    assert await store.get_handle(other.handle_digest) == other
    assert await store.get_grant("g1") == grant()
    assert await all_callbacks_due(store, T0) == []
    assert [e.kind for e in await store.audit_events()] == ["handle.issued"]


async def test_grant_round_trips_exactly(store: Store) -> None:
    original = await with_handle(store)
    local = datetime(2025, 1, 1, 14, 0, tzinfo=PARIS)
    record = grant(
        subject={"type": "user", "id": "bob", "properties": TRICKY},
        authorization_details=[TRICKY, {"type": "payment", "amount": 1, "fee": 1.0, "memo": None}],
        approval={"id": "a1", "approved_until": "2025-01-01T13:00:00Z", "state": "eyJ...", "n": 1.0, "null": None},
        approved_until=local,
        created_at=local - timedelta(hours=1),
        revoked_at=local,
        key_thumbprint=None,
        refresh_allowed=False,
    )
    assert await store.update_handle(advanced(original, state="issued", grant_id="g1"), expected_version=0, grants=[record])
    stored = await store.get_grant("g1")
    assert stored == record and stored is not None
    for member in ("subject", "authorization_details", "approval"):
        assert exact(getattr(stored, member)) == exact(getattr(record, member))
    payment = stored.authorization_details[1]
    assert type(payment["amount"]) is int and type(payment["fee"]) is float and payment["memo"] is None
    assert "absent" not in stored.approval and stored.approval["null"] is None
    assert stored.approved_until.utcoffset() == timedelta(0) and stored.approved_until.hour == 12
    assert (stored.key_thumbprint, stored.refresh_allowed, stored.scope) == (None, False, ["openid"])


async def test_fifty_concurrent_redeemers_one_wins(open_store: OpenStore) -> None:
    """OP-25: each redeemer reads the handle and, while it is pending, tries pending -> issued
    with its own grant; exactly one succeeds and only its grant and audit event exist."""
    stores = [await open_store() for _ in range(5)]
    original = await with_handle(stores[0])
    digest = original.handle_digest

    async def redeem(store: Store, n: int) -> bool:
        current = await store.get_handle(digest)
        assert current is not None
        if current.state != "pending":
            return False  # the sidecar answers invalid_grant
        issued = advanced(current, state="issued", grant_id=f"g{n}")
        return await store.update_handle(
            issued, expected_version=current.version, grants=[grant(f"g{n}")],
            audit=[draft("handle.issued", n=n)], callbacks=[callback(f"c{n}")],
        )

    results = await asyncio.gather(*(redeem(stores[n % 5], n) for n in range(50)))
    assert results.count(True) == 1
    winner = results.index(True)
    stored = await stores[1].get_handle(digest)
    assert stored is not None and (stored.state, stored.grant_id, stored.version) == ("issued", f"g{winner}", 1)
    assert [n for n in range(50) if await stores[2].get_grant(f"g{n}") is not None] == [winner]
    events = await stores[3].audit_events()
    assert [e.data for e in events] == [{"n": winner}]
    assert await all_callbacks_due(stores[4], T0) == [f"c{winner}"]


async def test_concurrent_polls_and_redeemers_lose_no_update(open_store: OpenStore) -> None:
    """Pollers (recording last_poll_at) and redeemers retry on a lost race, as the sidecar does:
    every successful write moves the version by one, and the handle is issued exactly once."""
    stores = [await open_store() for _ in range(3)]
    original = await with_handle(stores[0])
    digest = original.handle_digest

    async def write(store: Store, n: int) -> int:
        """How many writes of this worker committed (a poll at most once, a redemption at most once)."""
        while (current := await store.get_handle(digest)) is not None and current.state == "pending":
            if n % 2:
                change = advanced(current, last_poll_at=T0 + timedelta(seconds=n))
                grants: list[IssuedGrant] = []
            else:
                change = advanced(current, state="issued", grant_id=f"g{n}")
                grants = [grant(f"g{n}")]
            if await store.update_handle(change, expected_version=current.version, grants=grants):
                return 1
        return 0

    committed = await asyncio.gather(*(write(stores[n % 3], n) for n in range(20)))
    stored = await stores[1].get_handle(digest)
    assert stored is not None and stored.state == "issued"
    assert stored.version == sum(committed)
    issuers = [n for n in range(0, 20, 2) if committed[n]]
    assert len(issuers) == 1 and stored.grant_id == f"g{issuers[0]}"


async def test_notifications_are_queued_with_the_state_change_and_claimable(store: Store) -> None:
    """A CIBA ping is a callback delivery of the handle's task: queued exactly when the handle
    resolves, then claimed and finished like any other (OP-30, OP-51)."""
    original = await with_handle(store, handle(notification={"mode": "ping", "endpoint": "https://agent42.example/ciba"}))
    ping = callback(
        "ping-1", event="ciba.ping", endpoint="https://agent42.example/ciba", caller="agent-42",
        body={"auth_req_id": "sealed:..."}, at=T0 + timedelta(seconds=1),
    )
    stale = msgspec.structs.replace(original, state="denied", version=6)
    assert not await store.update_handle(stale, expected_version=5, callbacks=[ping])
    assert await all_callbacks_due(store, T0 + timedelta(days=1)) == []

    resolved = advanced(original, state="denied", updated_at=T0 + timedelta(seconds=1))
    assert await store.update_handle(resolved, expected_version=0, callbacks=[ping], audit=[draft("handle.denied")])
    assert await store.claim_callbacks(T0, lease=timedelta(seconds=30)) == []  # not due yet
    [claimed] = await store.claim_callbacks(T0 + timedelta(seconds=1), lease=timedelta(seconds=30))
    assert msgspec.structs.replace(claimed, lease_until=None) == ping
    await store.finish_callback(msgspec.structs.replace(claimed, attempts=1, delivered_at=T0 + timedelta(seconds=2)))
    assert await all_callbacks_due(store, T0 + timedelta(days=1)) == []


# -- listings -------------------------------------------------------------------------------


async def test_handles_for_task(store: Store) -> None:
    first = await with_handle(store)
    second = await with_handle(store, handle("h2", dedup_key="dk-2"))
    assert await store.update_handle(advanced(second, state="expired"), expected_version=0)
    elsewhere = await with_handle(store, handle("h3", dedup_key="dk-3", task_id="t2"))

    found = await store.handles_for_task("t1")
    assert sorted(found, key=lambda h: h.handle_digest) == found
    assert {h.handle_digest: h.state for h in found} == {first.handle_digest: "pending", second.handle_digest: "expired"}
    assert await store.handles_for_task("t2") == [elsewhere]
    assert await store.handles_for_task("missing") == []


async def test_handles_for_dedup_key(store: Store) -> None:
    """Every handle of one dedup key, in any state and digest order: the pending one a retry
    gets (OP-20), the resolved ones the Idempotency-Key counts (D-AROP-5)."""
    first = await with_handle(store)
    assert await store.update_handle(advanced(first, state="denied"), expected_version=0)
    second = await with_handle(store, handle("h2", created_at=T0 + timedelta(seconds=1)))
    await with_handle(store, handle("h3", dedup_key="dk-other"))

    found = await store.handles_for_dedup_key("dk-1")
    assert sorted(found, key=lambda h: h.handle_digest) == found
    assert {h.handle_digest: h.state for h in found} == {first.handle_digest: "denied", second.handle_digest: "pending"}
    assert await store.handles_for_dedup_key("missing") == []


async def test_list_handles_for_the_expiry_worker(store: Store) -> None:
    """Pending handles expiring strictly before an instant, in digest order, page by page."""
    records = [
        handle(f"h{n}", dedup_key=f"dk{n}", expires_at=T0 + timedelta(seconds=offset))
        for n, offset in enumerate([-3, -2, -1, 0, 1])
    ]
    for record in records:
        await with_handle(store, record)
    issued = await store.get_handle(records[0].handle_digest)
    assert issued is not None and await store.update_handle(advanced(issued, state="issued"), expected_version=0)

    due = sorted(r.handle_digest for r in records[1:3])
    assert [h.handle_digest for h in await store.list_handles(state="pending", expires_before=T0)] == due
    assert [h.handle_digest for h in await store.list_handles(state="pending", expires_before=T0.astimezone(PARIS))] == due
    assert [h.handle_digest for h in await store.list_handles(state="issued")] == [records[0].handle_digest]

    every = sorted(r.handle_digest for r in records)
    assert [h.handle_digest for h in await store.list_handles()] == every
    first_page = await store.list_handles(limit=2)
    second_page = await store.list_handles(limit=2, after=first_page[-1].handle_digest)
    third_page = await store.list_handles(limit=2, after=second_page[-1].handle_digest)
    assert [h.handle_digest for h in first_page + second_page + third_page] == every
    assert await store.list_handles(after=every[-1]) == []


async def test_migration_0006_the_notification_sweep_lists_pending_handles_of_one_binding(store: Store) -> None:
    """OP-51: only pending CIBA handles can await a notice; the sweep reads no other binding."""
    ciba = await with_handle(store, handle("h-ciba", dedup_key="dk-ciba"))
    await with_handle(store, handle("h-dtr", binding="dtr", dedup_key="dk-dtr"))
    resolved = await with_handle(store, handle("h-done", dedup_key="dk-done"))
    assert await store.update_handle(advanced(resolved, state="denied"), expected_version=0)
    assert [h.handle_digest for h in await store.list_handles(state="pending", binding="ciba")] == [ciba.handle_digest]
    assert [h.binding for h in await store.list_handles(state="pending", binding="dtr")] == ["dtr"]



async def test_migration_0006_fills_the_binding_of_existing_handles(store: Store, tamper: Tamper) -> None:
    """Handles written before 0006 get their binding from their document."""
    ciba = await with_handle(store, handle("h-old", dedup_key="dk-old"))
    await tamper("UPDATE continuation_handles SET binding = ''")
    assert await store.list_handles(binding="ciba") == []
    [backfill] = [line for line in load_migrations(store.dialect)[5].sql.splitlines() if line.startswith("UPDATE")]
    await tamper(backfill.rstrip(";"))
    assert [h.handle_digest for h in await store.list_handles(binding="ciba")] == [ciba.handle_digest]


async def test_state_survives_close_and_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    original = await with_handle(first)
    issued = advanced(original, state="issued", grant_id="g1")
    assert await first.update_handle(issued, expected_version=0, grants=[grant()], callbacks=[callback("c1")])
    await first.close()

    reopened = await open_store()
    assert await reopened.get_handle(original.handle_digest) == issued
    assert await reopened.get_grant("g1") == grant()
    assert await all_callbacks_due(reopened, T0) == ["c1"]
