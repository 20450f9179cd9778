"""Verification of the hash-chained audit log (`arop audit verify`)."""

from __future__ import annotations

from collections.abc import Iterable

from services.store.base import Store
from services.store.codec import draft_of
from services.store.records import GENESIS_HASH, AuditEvent, audit_hash

_PAGE = 1000


def verify_audit_chain(
    events: Iterable[AuditEvent],
    *,
    after_seq: int = 0,
    after_hash: str = GENESIS_HASH,
    head: tuple[int, str] | None = None,
) -> list[str]:
    """The problems found in `events` (in the order given), or [] when the chain is intact.

    The events must continue the chain after `(after_seq, after_hash)` — by default they start it:
    the first has seq 1 and prev_hash GENESIS_HASH. Reported: a gap in seq (events missing), a
    seq out of order or repeated, a prev_hash that is not the previous event's hash (an event
    removed, inserted or re-hashed), and a hash that does not match the event's content (an event
    altered). After a problem, checking resumes from the event as stored, so one altered event is
    reported once, where it is, rather than for the rest of the chain (seq continues from the
    highest seen, so an event out of order is reported as such rather than as a gap after it).

    Removing the newest events leaves a chain that is intact as far as it goes, so the events
    alone cannot show it: given `head`, the `(seq, hash)` the store's chain head records (see
    `stored_chain`), the last event must be that one, and missing or extra events at the end are
    reported too.

    Events may be a generator (pages of `Store.audit_events`): they are read once, in one pass.
    """
    problems: list[str] = []
    expected_seq, prev_hash = after_seq + 1, after_hash
    last = (after_seq, after_hash)
    for event in events:
        seq = event.seq
        if seq > expected_seq:
            problems.append(f"seq {seq}: gap in seq, {_seqs(expected_seq, seq - 1)} missing")
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
        last = (seq, event.hash)
    if head is not None and (problem := _head_problem(last, head)):
        problems.append(problem)
    return problems


def _seqs(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}..{last}"


def _head_problem(last: tuple[int, str], head: tuple[int, str]) -> str | None:
    """How the last event disagrees with the chain head, if it does: events removed from the end
    (the head is further on), events appended behind the store's back (the head is not as far),
    or a different last event (the head records another hash)."""
    (last_seq, last_hash), (head_seq, head_hash) = last, head
    if head_seq > last_seq:
        return (
            f"seq {_seqs(last_seq + 1, head_seq)}: missing at the end (the newest events were removed):"
            f" the chain head is seq {head_seq} but the log ends at seq {last_seq}"
        )
    if head_seq < last_seq:
        return (
            f"seq {_seqs(head_seq + 1, last_seq)}: beyond the chain head (seq {head_seq}):"
            " events the store did not chain, or the head was set back"
        )
    if last_hash != head_hash:
        return f"seq {last_seq}: the last event's hash {last_hash} is not the chain head's hash {head_hash}"
    return None


async def stored_chain(store: Store) -> tuple[list[AuditEvent], tuple[int, str]]:
    """Every stored audit event in chain order, and the chain head to check the last one against.

    Safe while other processes append. The head is read before each page, and the walk ends at
    the first empty page, so the head returned was read after every event returned and before
    the empty page: an event the store chained has a seq no greater than that head, and every
    event up to it had committed by the time the empty page was read. So events after the head
    were not chained by the store, and events missing before it were removed.
    """
    events: list[AuditEvent] = []
    while True:
        head = await store.audit_head()
        page = await store.audit_events(after_seq=events[-1].seq if events else 0, limit=_PAGE)
        if not page:
            return events, head
        events.extend(page)
