"""verify_audit_chain and stored_chain (for `arop audit verify`): an intact chain passes, every
kind of tampering is reported where it happened, including the newest events removed. The tests
taking a store run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from services.store import Store, audit
from services.store.audit import stored_chain, verify_audit_chain
from services.store.codec import chain_audit
from services.store.records import GENESIS_HASH, AuditDraft, AuditEvent
from tests.store.conftest import OpenStore, Tamper

REPO_ROOT = Path(__file__).resolve().parents[2]

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def chain(count: int = 5) -> list[AuditEvent]:
    drafts = [
        AuditDraft(at=T0 + timedelta(seconds=n), kind=f"k{n}", actor="pep", task_id=f"t{n % 2}", data={"n": n, "x": 1.0})
        for n in range(count)
    ]
    return chain_audit(drafts, 0, GENESIS_HASH)


def test_intact_chain_and_empty_chain_pass() -> None:
    assert verify_audit_chain(chain()) == []
    assert verify_audit_chain([]) == []
    assert verify_audit_chain(iter(chain())) == []  # one pass over a generator


def test_chain_continues_after_a_known_event() -> None:
    events = chain(6)
    assert verify_audit_chain(events[3:], after_seq=3, after_hash=events[2].hash) == []
    assert verify_audit_chain(events[3:]) == [
        "seq 4: gap in seq, 1..3 missing",
        f"seq 4: broken link, prev_hash {events[2].hash} is not the previous hash {GENESIS_HASH}",
    ]


def test_altered_content_is_a_hash_mismatch_at_that_event_only() -> None:
    events = chain()
    for change in ({"data": {"n": 2, "x": 1}}, {"actor": "mallory"}, {"at": T0}, {"task_id": None}, {"kind": "x"}):
        tampered = list(events)
        tampered[2] = msgspec.structs.replace(events[2], **change)
        problems = verify_audit_chain(tampered)
        assert len(problems) == 1, change
        assert problems[0].startswith(f"seq 3: hash mismatch, stored {events[2].hash} but content hashes to ")


def test_altered_and_rehashed_event_breaks_the_next_link() -> None:
    events = chain()
    forged = msgspec.structs.replace(events[2], data={"n": 99})
    forged = chain_audit([AuditDraft(at=forged.at, kind=forged.kind, actor=forged.actor, task_id=forged.task_id, data=forged.data)], 2, events[1].hash)[0]
    tampered = [*events[:2], forged, *events[3:]]
    assert verify_audit_chain(tampered) == [
        f"seq 4: broken link, prev_hash {events[2].hash} is not the previous hash {forged.hash}"
    ]


def test_removed_event_is_a_gap_and_a_broken_link() -> None:
    events = chain()
    assert verify_audit_chain([*events[:2], *events[3:]]) == [
        "seq 4: gap in seq, 3 missing",
        f"seq 4: broken link, prev_hash {events[2].hash} is not the previous hash {events[1].hash}",
    ]


def test_swapped_events_are_reported() -> None:
    events = chain()
    h = [event.hash for event in events]
    assert verify_audit_chain([events[0], events[2], events[1], *events[3:]]) == [
        "seq 3: gap in seq, 2 missing",
        f"seq 3: broken link, prev_hash {h[1]} is not the previous hash {h[0]}",
        "seq 2: out of order or repeated (expected seq 4)",
        f"seq 2: broken link, prev_hash {h[0]} is not the previous hash {h[2]}",
        f"seq 4: broken link, prev_hash {h[2]} is not the previous hash {h[1]}",
    ]


def test_duplicated_event_is_reported() -> None:
    events = chain(3)
    h = [event.hash for event in events]
    assert verify_audit_chain([*events[:2], events[1], events[2]]) == [
        "seq 2: out of order or repeated (expected seq 3)",
        f"seq 2: broken link, prev_hash {h[0]} is not the previous hash {h[1]}",
    ]


def test_wrong_genesis_is_a_broken_link() -> None:
    events = chain(2)
    first = chain_audit([AuditDraft(at=T0, kind="k0", actor="pep")], 0, "f" * 64)[0]
    assert verify_audit_chain([first]) == [f"seq 1: broken link, prev_hash {'f' * 64} is not the previous hash {GENESIS_HASH}"]
    assert verify_audit_chain(events) == []


# -- the chain head: the newest events removed ----------------------------------------------


def truncation(head_seq: int, last_seq: int) -> str:
    missing = f"{last_seq + 1}..{head_seq}" if head_seq > last_seq + 1 else str(head_seq)
    return (
        f"seq {missing}: missing at the end (the newest events were removed):"
        f" the chain head is seq {head_seq} but the log ends at seq {last_seq}"
    )


def test_last_event_at_the_head_passes() -> None:
    events = chain()
    assert verify_audit_chain(events, head=(5, events[-1].hash)) == []
    assert verify_audit_chain([], head=(0, GENESIS_HASH)) == []
    assert verify_audit_chain(events[3:], after_seq=3, after_hash=events[2].hash, head=(5, events[-1].hash)) == []
    assert verify_audit_chain([], after_seq=3, after_hash=events[2].hash, head=(3, events[2].hash)) == []


def test_removed_newest_events_are_reported() -> None:
    events = chain()
    head = (5, events[-1].hash)
    assert verify_audit_chain(events[:4], head=head) == [
        "seq 5: missing at the end (the newest events were removed): the chain head is seq 5 but the log ends at seq 4"
    ]
    assert verify_audit_chain(events[:2], head=head) == [truncation(5, 2)]
    assert verify_audit_chain([], head=head) == [truncation(5, 0)]
    # Without the head, a truncated chain looks intact.
    assert verify_audit_chain(events[:2]) == []


def test_events_beyond_the_head_are_reported() -> None:
    events = chain()
    assert verify_audit_chain(events, head=(3, events[2].hash)) == [
        "seq 4..5: beyond the chain head (seq 3): events the store did not chain, or the head was set back"
    ]


def test_last_event_replaced_and_rehashed_is_reported_only_against_the_head() -> None:
    events = chain()
    forged = chain_audit([AuditDraft(at=T0, kind="forged", actor="mallory")], 4, events[3].hash)[0]
    tampered = [*events[:4], forged]
    assert verify_audit_chain(tampered) == []
    assert verify_audit_chain(tampered, head=(5, events[-1].hash)) == [
        f"seq 5: the last event's hash {forged.hash} is not the chain head's hash {events[-1].hash}"
    ]


async def verify_store(store: Store) -> list[str]:
    events, head = await stored_chain(store)
    return verify_audit_chain(events, head=head)


async def append(store: Store, count: int) -> list[AuditEvent]:
    return await store.append_audit([AuditDraft(at=T0, kind=f"k{n}", actor="pep", data={"n": n}) for n in range(count)])


async def test_stored_chain_of_an_intact_store_passes(store: Store) -> None:
    assert await stored_chain(store) == ([], (0, GENESIS_HASH))
    appended = await append(store, 5)
    events, head = await stored_chain(store)
    assert (events, head) == (appended, (5, appended[-1].hash))
    assert verify_audit_chain(events, head=head) == []


async def test_stored_chain_reports_the_newest_events_removed(store: Store, tamper: Tamper) -> None:
    await append(store, 5)
    await tamper("DELETE FROM audit_events WHERE seq > 3")
    assert await verify_store(store) == [truncation(5, 3)]
    await tamper("DELETE FROM audit_events")
    assert await verify_store(store) == [truncation(5, 0)]


async def test_stored_chain_reports_the_head_set_back(store: Store, tamper: Tamper) -> None:
    appended = await append(store, 5)
    await tamper(f"UPDATE audit_head SET seq = 3, hash = '{appended[2].hash}'")
    assert await verify_store(store) == [
        "seq 4..5: beyond the chain head (seq 3): events the store did not chain, or the head was set back"
    ]


async def test_stored_chain_while_other_instances_append(open_store: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head and the pages come from separate transactions, yet a verification racing with
    writers never mistakes their new events for tampering."""
    monkeypatch.setattr(audit, "_PAGE", 3)  # many pages, so writers commit between them
    reader, *writers = [await open_store() for _ in range(3)]
    await append(reader, 4)

    async def verify_repeatedly() -> list[list[str]]:
        return [await verify_store(reader) for _ in range(10)]

    *_, verifications = await asyncio.gather(*(append(writers[n % 2], 1 + n % 3) for n in range(30)), verify_repeatedly())
    assert verifications == [[]] * 10
    assert await verify_store(reader) == []
    assert len(await reader.audit_events(limit=1000)) == 4 + sum(1 + n % 3 for n in range(30))


async def arop_audit_verify(store_url: str) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AROP_")} | {"AROP_STORE__URL": store_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "audit", "verify",
        cwd=REPO_ROOT, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_arop_audit_verify_reports_the_newest_events_removed(store: Store, store_url: str, tamper: Tamper) -> None:
    await append(store, 4)
    assert await arop_audit_verify(store_url) == (0, "audit log intact: 4 events\n", "")

    await tamper("DELETE FROM audit_events WHERE seq = 4")
    code, stdout, stderr = await arop_audit_verify(store_url)
    assert (code, stdout) == (1, "")
    assert stderr.splitlines() == [truncation(4, 3), "arop: audit log: 1 problem(s) in 3 events, chain head at seq 4"]
