"""verify_audit_chain (for `arop audit verify`): an intact chain passes, every kind of tampering
is reported where it happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from services.store.audit import verify_audit_chain
from services.store.codec import chain_audit
from services.store.records import GENESIS_HASH, AuditDraft, AuditEvent

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
