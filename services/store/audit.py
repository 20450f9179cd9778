"""Verification of the hash-chained audit log (`arop audit verify`)."""

from __future__ import annotations

from collections.abc import Iterable

from services.store.codec import draft_of
from services.store.records import GENESIS_HASH, AuditEvent, audit_hash


def verify_audit_chain(
    events: Iterable[AuditEvent], *, after_seq: int = 0, after_hash: str = GENESIS_HASH
) -> list[str]:
    """The problems found in `events` (in the order given), or [] when the chain is intact.

    The events must continue the chain after `(after_seq, after_hash)` — by default they start it:
    the first has seq 1 and prev_hash GENESIS_HASH. Reported: a gap in seq (events missing), a
    seq out of order or repeated, a prev_hash that is not the previous event's hash (an event
    removed, inserted or re-hashed), and a hash that does not match the event's content (an event
    altered). After a problem, checking resumes from the event as stored, so one altered event is
    reported once, where it is, rather than for the rest of the chain (seq continues from the
    highest seen, so an event out of order is reported as such rather than as a gap after it).

    Events may be a generator (pages of `Store.audit_events`): they are read once, in one pass.
    Removing events from the end cannot be detected from the events alone.
    """
    problems: list[str] = []
    expected_seq, prev_hash = after_seq + 1, after_hash
    for event in events:
        seq = event.seq
        if seq > expected_seq:
            missing = str(expected_seq) if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            problems.append(f"seq {seq}: gap in seq, {missing} missing")
        elif seq < expected_seq:
            problems.append(f"seq {seq}: out of order or repeated (expected seq {expected_seq})")
        if event.prev_hash != prev_hash:
            problems.append(
                f"seq {seq}: broken link, prev_hash {event.prev_hash} is not the previous hash {prev_hash}"
            )
        actual = audit_hash(draft_of(event), seq, event.prev_hash)
        if event.hash != actual:
            problems.append(f"seq {seq}: hash mismatch, stored {event.hash} but content hashes to {actual}")
        expected_seq, prev_hash = max(expected_seq, seq + 1), event.hash
    return problems
