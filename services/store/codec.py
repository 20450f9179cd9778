"""Encoding shared by the store back ends: entity JSON columns, UTC timestamps, access-request
and continuation-handle records as JSON documents, and the audit chain."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from profiles.client_challenge.challenge import ChallengeSession
from services.store.records import (
    ReviewerSession,
    ApprovalRecord,
    AuditDraft,
    AuditEvent,
    CallbackDelivery,
    ContinuationHandle,
    EntityChanges,
    EntityRecord,
    EntityUid,
    EvaluationRecord,
    IdempotencyClaim,
    IdempotentTask,
    IssuedGrant,
    TaskCreation,
    TaskRecord,
    audit_hash,
)

_decode_properties = msgspec.json.Decoder(dict[str, Any]).decode
_decode_parents = msgspec.json.Decoder(list[EntityUid]).decode


# What a tombstone keeps: the uid only, so a deleted entity's attributes do not linger.
EMPTY_PROPERTIES = "{}"
EMPTY_PARENTS = "[]"


def encode_entity(entity: EntityRecord) -> tuple[str, str]:
    """The `properties` and `parents` columns of `entity`, as JSON text."""
    return (
        msgspec.json.encode(entity.properties).decode(),
        msgspec.json.encode(entity.parents).decode(),
    )


def decode_changes(revision: int, rows: Iterable[Sequence[Any]]) -> EntityChanges:
    """EntityChanges from `(type, id, properties, parents, deleted)` rows (JSON as text)."""
    changes = EntityChanges(revision=revision, upserted=[], deleted=[])
    for type_, id_, properties, parents, deleted in rows:
        if deleted:
            changes.deleted.append(EntityUid(type_, id_))
        else:
            record = EntityRecord(type_, id_, _decode_properties(properties), _decode_parents(parents))
            changes.upserted.append(record)
    return changes


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC. Naive datetimes are refused: guessing their zone would shift keys' lives."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got naive {moment!r}")
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """`moment` as SQLite keeps it: UTC ISO-8601 text with +00:00 and fixed microsecond
    precision, so that text order is time order."""
    return as_utc(moment).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# -- access-request records as JSON documents ---------------------------------------------
# A record is stored whole as its msgspec JSON encoding, written and read back verbatim (TEXT in
# SQLite, `json` — not jsonb — in PostgreSQL), so that the parsed JSON values inside it come back
# exactly: 1 stays 1, 1.0 stays 1.0, -0.0 and 1e100 stay floats, null stays null and an absent
# member stays absent. The columns queries need are derived from the same record by the
# `*_row` helpers, which take the dialect's time encoding (`format_time` for SQLite text,
# `as_utc` for timestamptz).

TimeColumn = Callable[[datetime], Any]
_R = TypeVar("_R", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()
_decode_evaluation = msgspec.json.Decoder(EvaluationRecord).decode
_decode_task = msgspec.json.Decoder(TaskRecord).decode
_decode_approval = msgspec.json.Decoder(ApprovalRecord).decode
_decode_audit_event = msgspec.json.Decoder(AuditEvent).decode
_decode_audit_draft = msgspec.json.Decoder(AuditDraft).decode
_decode_callback = msgspec.json.Decoder(CallbackDelivery).decode
_decode_handle = msgspec.json.Decoder(ContinuationHandle).decode
_decode_grant = msgspec.json.Decoder(IssuedGrant).decode
_decode_challenge_session = msgspec.json.Decoder(ChallengeSession).decode
_decode_reviewer_session = msgspec.json.Decoder(ReviewerSession).decode


def in_utc(record: _R) -> _R:
    """`record` with every datetime member in UTC (naive ones refused, see `as_utc`), so that a
    stored record reads back equal and its timestamps agree with the indexed columns."""
    changes = {
        name: as_utc(value)
        for name in record.__struct_fields__
        if isinstance(value := getattr(record, name), datetime) and value.tzinfo is not UTC
    }
    return msgspec.structs.replace(record, **changes) if changes else record


def encode_document(record: msgspec.Struct) -> str:
    """The JSON document of a record (datetimes in UTC)."""
    return _encoder.encode(in_utc(record)).decode()


def _optional(time: TimeColumn, moment: datetime | None) -> Any:
    return None if moment is None else time(moment)


def evaluation_row(record: EvaluationRecord, time: TimeColumn) -> tuple[Any, ...]:
    """`(evaluation_id, expires_at, document)`."""
    return (record.evaluation_id, time(record.expires_at), encode_document(record))


def task_row(task: TaskRecord, time: TimeColumn) -> tuple[Any, ...]:
    """`(id, status, requester, created_at, updated_at, expires_at, version, document)`."""
    return (
        task.id,
        task.status,
        task.requester,
        time(task.created_at),
        time(task.updated_at),
        time(task.expires_at),
        task.version,
        encode_document(task),
    )


def approval_row(approval: ApprovalRecord, time: TimeColumn) -> tuple[Any, ...]:
    """`(id, task_id, item_index, approved_until, revoked_at, document)`."""
    return (
        approval.id,
        approval.task_id,
        approval.item_index,
        time(approval.approved_until),
        _optional(time, approval.revoked_at),
        encode_document(approval),
    )


def idempotency_row(claim: IdempotencyClaim, task_id: str, time: TimeColumn) -> tuple[Any, ...]:
    """`(caller, key, fingerprint, task_id, expires_at)`."""
    return (claim.caller, claim.key, claim.fingerprint, task_id, time(claim.expires_at))


def callback_row(delivery: CallbackDelivery, time: TimeColumn) -> tuple[Any, ...]:
    """`(id, task_id, attempts, next_attempt_at, lease_until, delivered_at, failed_at, document)`."""
    return (
        delivery.id,
        delivery.task_id,
        delivery.attempts,
        time(delivery.next_attempt_at),
        _optional(time, delivery.lease_until),
        _optional(time, delivery.delivered_at),
        _optional(time, delivery.failed_at),
        encode_document(delivery),
    )


def audit_row(event: AuditEvent, time: TimeColumn) -> tuple[Any, ...]:
    """`(seq, at, kind, actor, task_id, prev_hash, hash, document)`."""
    return (
        event.seq,
        time(event.at),
        event.kind,
        event.actor,
        event.task_id,
        event.prev_hash,
        event.hash,
        encode_document(event),
    )


def handle_row(handle: ContinuationHandle, time: TimeColumn) -> tuple[Any, ...]:
    """`(handle_digest, dedup_key, state, binding, task_id, expires_at, version, document)`."""
    check_digest(handle.handle_digest)
    return (
        handle.handle_digest,
        handle.dedup_key,
        handle.state,
        handle.binding,
        handle.task_id,
        time(handle.expires_at),
        handle.version,
        readable_document(handle, _decode_handle),
    )


def grant_row(grant: IssuedGrant) -> tuple[Any, ...]:
    """`(grant_id, handle_digest, document)`."""
    return (grant.grant_id, grant.handle_digest, readable_document(grant, _decode_grant))


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_digest(handle_digest: str) -> None:
    """Refuse a handle key that is not a SHA-256 hex digest: most likely the handle itself, which
    must never be stored (OP-27)."""
    if not _SHA256_HEX.fullmatch(handle_digest):
        raise ValueError("handle_digest must be the SHA-256 hex digest of the handle (profiles.arop.handles.handle_digest)")


def readable_document(record: msgspec.Struct, decode: Callable[[str], msgspec.Struct]) -> str:
    """The JSON document of `record`, refused (ValueError) unless it decodes back into its type.
    Constructing a Struct checks no types, and a stored document that does not decode (an unknown
    handle state, a float interval) would break every later read of that row and of lists
    holding it."""
    document = encode_document(record)
    try:
        decode(document)
    except msgspec.ValidationError as error:
        raise ValueError(f"{type(record).__name__} would not read back: {error}") from error
    return document


def decode_evaluation(document: str | bytes) -> EvaluationRecord:
    return _decode_evaluation(document)


def decode_task(document: str | bytes) -> TaskRecord:
    return _decode_task(document)


def decode_idempotent_task(fingerprint: str, document: str | bytes) -> IdempotentTask:
    return IdempotentTask(_decode_task(document), fingerprint)


def decode_approval(document: str | bytes) -> ApprovalRecord:
    return _decode_approval(document)


def decode_audit_event(document: str | bytes) -> AuditEvent:
    return _decode_audit_event(document)


def decode_callback(document: str | bytes) -> CallbackDelivery:
    return _decode_callback(document)


def decode_handle(document: str | bytes) -> ContinuationHandle:
    return _decode_handle(document)


def decode_grant(document: str | bytes) -> IssuedGrant:
    return _decode_grant(document)


def session_row(session: ChallengeSession | ReviewerSession, time: TimeColumn) -> tuple[Any, ...]:
    """`(session_digest, expires_at, document)`: the row of a challenge or reviewer session."""
    return (session.session_digest, time(session.expires_at), encode_document(session))


def decode_challenge_session(document: str | bytes) -> ChallengeSession:
    return _decode_challenge_session(document)


def decode_reviewer_session(document: str | bytes) -> ReviewerSession:
    return _decode_reviewer_session(document)


def already_bound(bound: IdempotentTask, claim: IdempotencyClaim) -> TaskCreation:
    """What `create_task` answers when the claimed key is already bound: nothing created, and
    whether the stored body fingerprint is the claim's (else the service answers
    duplicate_request)."""
    return TaskCreation(bound.task, False, bound.fingerprint == claim.fingerprint)


def is_retry(remembered_intent: str | None, intent: str | None) -> bool:
    """Whether a jti presented again comes from the submission that first presented it (ARAP
    §8.6): only a non-None intent equal to the remembered one. Without an intent there is no
    telling a retry from a replay, so it counts as a replay."""
    return intent is not None and intent == remembered_intent


def revoked(approval: ApprovalRecord, at: datetime) -> ApprovalRecord:
    return msgspec.structs.replace(approval, revoked_at=as_utc(at))


def leased(delivery: CallbackDelivery, until: datetime) -> CallbackDelivery:
    return msgspec.structs.replace(delivery, lease_until=as_utc(until))


def released(delivery: CallbackDelivery) -> CallbackDelivery:
    return msgspec.structs.replace(delivery, lease_until=None)


def check_next_version(record: str, version: int, expected_version: int) -> None:
    """Refuse an update of `record` (e.g. "task 't1'") whose new version is not
    `expected_version + 1`: a version that does not move on would let a later writer's stale
    compare-and-set succeed."""
    if version != expected_version + 1:
        raise ValueError(
            f"{record}: version must be expected_version + 1 = {expected_version + 1}, got {version}"
        )


def handle_update_row(
    handle: ContinuationHandle, expected_version: int, grants: Sequence[IssuedGrant], time: TimeColumn
) -> tuple[Any, ...]:
    """The `handle_row` an `update_handle` writes, after refusing (ValueError) what no back end may
    write: a version that does not advance by one, a grant issued for another handle."""
    check_next_version(f"handle {handle.handle_digest}", handle.version, expected_version)
    for grant in grants:
        if grant.handle_digest != handle.handle_digest:
            raise ValueError(f"grant {grant.grant_id!r} names another handle than {handle.handle_digest}")
    return handle_row(handle, time)


def update_goes_ahead(handle: ContinuationHandle, stored: Sequence[Any] | None, expected_version: int) -> bool:
    """Whether `update_handle` writes `handle` over the stored `(state, version)` (None: there is
    no such handle). False when the version moved on (another writer won). ValueError when it
    would change a terminal state: once issued, denied, cancelled or expired a handle answers the
    same way until it is gone (OP-25, OP-68); a pending handle may move anywhere."""
    if stored is None or stored[1] != expected_version:
        return False
    stored_state = stored[0]
    if stored_state != "pending" and handle.state != stored_state:
        raise ValueError(f"handle {handle.handle_digest}: terminal state {stored_state!r} cannot become {handle.state!r}")
    return True


def conjunction(filters: Sequence[tuple[str, Any]], placeholder: Callable[[int], str]) -> tuple[str, list[Any]]:
    """` WHERE ...` (or "") over the `(condition, value)` filters whose value is not None, and
    their parameters in order. A condition is SQL ending where its parameter goes ("status =");
    `placeholder(n)` spells the n-th parameter in the dialect ("?" or "$n")."""
    conditions: list[str] = []
    parameters: list[Any] = []
    for condition, value in filters:
        if value is not None:
            parameters.append(value)
            conditions.append(f"{condition} {placeholder(len(parameters))}")
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), parameters


# -- the audit chain --------------------------------------------------------------------------


def canonical_draft(draft: AuditDraft) -> AuditDraft:
    """`draft` as it reads back from storage (UTC time, `data` as parsed JSON: tuples become
    lists, NaN becomes null...), so that the hash covers exactly what is stored."""
    return _decode_audit_draft(encode_document(draft))


def chain_audit(drafts: Iterable[AuditDraft], head_seq: int, head_hash: str) -> list[AuditEvent]:
    """Chain `drafts` after the head `(head_seq, head_hash)` (`(0, GENESIS_HASH)` when empty):
    consecutive seqs from head_seq + 1, each prev_hash the previous hash."""
    events: list[AuditEvent] = []
    seq, prev_hash = head_seq, head_hash
    for original in drafts:
        draft = canonical_draft(original)
        seq += 1
        digest = audit_hash(draft, seq, prev_hash)
        events.append(
            AuditEvent(
                seq=seq,
                at=draft.at,
                kind=draft.kind,
                actor=draft.actor,
                task_id=draft.task_id,
                data=draft.data,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        prev_hash = digest
    return events


def draft_of(event: AuditEvent) -> AuditDraft:
    """The draft an event was chained from (what its hash covers, with seq and prev_hash)."""
    return AuditDraft(at=event.at, kind=event.kind, actor=event.actor, task_id=event.task_id, data=event.data)
