"""The storage interface every back end implements (SQLite embedded, PostgreSQL in production).

Correctness never depends on Redis or on process memory: whatever must survive a restart or be
shared by replicas goes through here, and each method is one transaction.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from profiles.client_challenge.challenge import ChallengeSession
from services.store.codec import decode_challenge_session, decode_reviewer_session
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
    HandleCreation,
    IdempotencyClaim,
    IdempotentTask,
    IssuedGrant,
    SigningKey,
    TaskCreation,
    TaskRecord,
)


def memory_key(tag: str, *parts: str) -> str:
    """A `claim_token_id` key for a memory other than a binding token's own jti (a txn's owner,
    a replayed challenge or evidence jti): tagged, NUL-framed, hashed. The column holds ARAP
    binding-token jtis too; the tag keeps the namespaces apart."""
    return tag + hashlib.sha256("\0".join(parts).encode()).hexdigest()


class StoreUnavailable(Exception):
    """The back end cannot be reached; callers answer 503 and retry later."""


class Store(abc.ABC):
    dialect: str

    @abc.abstractmethod
    async def open(self, *, migrate: bool = True) -> None:
        """Connect (and apply pending migrations unless `migrate` is false)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless a trivial query succeeds (readiness)."""

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending versioned migrations; return the versions applied now (in order).

        Safe to run concurrently from several processes: exactly one applies each version.
        """

    @abc.abstractmethod
    async def applied_migrations(self) -> list[str]: ...

    # -- entities (the policy information point) ------------------------------------------

    @abc.abstractmethod
    async def upsert_entities(self, entities: Sequence[EntityRecord]) -> int:
        """Insert or replace entities atomically; return the new entity revision.

        Revisions are totally ordered in commit order (writers serialise on one counter row), so
        `entity_changes(since)` never skips a committed change.
        """

    @abc.abstractmethod
    async def delete_entities(self, uids: Sequence[EntityUid]) -> int:
        """Delete entities atomically (kept as tombstones for sync); return the new revision.
        Deleting an unknown uid is not an error."""

    @abc.abstractmethod
    async def entity_changes(self, since_revision: int) -> EntityChanges:
        """Entities upserted and deleted after `since_revision`, and the revision now.
        `since_revision=0` returns every live entity and no deletions."""

    @abc.abstractmethod
    async def entity_revision(self) -> int:
        """The current entity revision (cheap: instances poll it)."""

    # -- secrets and keys -------------------------------------------------------------------

    @abc.abstractmethod
    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        """Return the secret stored under `name`, storing `candidate` first if there is none.
        Under concurrency every caller gets the same value (the first writer wins)."""

    @abc.abstractmethod
    async def add_signing_key(self, key: SigningKey) -> None: ...

    @abc.abstractmethod
    async def signing_keys(self, now: datetime) -> list[SigningKey]:
        """Keys not retired at `now`, newest first."""

    @abc.abstractmethod
    async def retire_signing_keys(self, before_kid: str, retires_at: datetime) -> None:
        """Set `retires_at` on every key older than `before_kid` that has none."""

    # -- access requests (ARAP) -------------------------------------------------------------
    # Every method is one transaction. A task change and everything that must survive with it
    # (approvals, audit events, callbacks to deliver) commit together or not at all, so a
    # crash at any point loses nothing and duplicates nothing.

    @abc.abstractmethod
    async def record_evaluation(self, record: EvaluationRecord) -> None:
        """Keep a requestable denial for the evaluation_id binding path (AR-30)."""

    @abc.abstractmethod
    async def get_evaluation(self, evaluation_id: str) -> EvaluationRecord | None: ...

    @abc.abstractmethod
    async def purge_evaluations(self, expired_before: datetime) -> int:
        """Delete recorded evaluations whose `expires_at` is before the instant; return how many."""

    @abc.abstractmethod
    async def claim_token_id(self, jti: str, intent: str | None, expires_at: datetime, now: datetime) -> bool:
        """Accept a presented `binding_token` `jti` (AR-26 step 3) unless it is a replay.

        True, remembering `(jti, intent, expires_at)`, when the jti is unknown or its remembered
        row expired (`expires_at` before `now`: it is replaced). True, changing nothing, when it
        was remembered with the same non-None `intent`: the same submission retried (ARAP §8.6;
        the service passes a hash of caller, Idempotency-Key and body fingerprint). False (a
        replay) otherwise: another intent, or None on either side. Of concurrent first claims
        with different intents exactly one gets True."""

    @abc.abstractmethod
    async def purge_token_ids(self, before: datetime) -> int:
        """Forget the jtis whose `expires_at` is before the instant; return how many."""

    @abc.abstractmethod
    async def idempotent_task(self, caller: str, key: str, now: datetime) -> IdempotentTask | None:
        """The task `caller`'s Idempotency-Key `key` is bound to, with the stored fingerprint, if
        the key has not expired at `now` (read only: `create_task` claims keys). The service asks
        before verifying the binding, so that a retry gets its task rather than a replay error."""

    @abc.abstractmethod
    async def create_task(
        self,
        task: TaskRecord,
        *,
        idempotency: IdempotencyClaim | None,
        approvals: Sequence[ApprovalRecord] = (),
        audit: Sequence[AuditDraft] = (),
        callbacks: Sequence[CallbackDelivery] = (),
    ) -> TaskCreation:
        """Insert `task` with its approvals and callbacks (and chain `audit`), unless `idempotency` names a key this caller already
        used and that has not expired at `task.created_at`: then nothing is written and the
        existing task is returned with `created=False` and `same_body` telling whether the
        fingerprints match. Concurrent calls with one key create exactly one task. An expired key
        is replaced (rebound to the new task; the old task stays)."""

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    async def update_task(
        self,
        task: TaskRecord,
        *,
        expected_version: int,
        approvals: Sequence[ApprovalRecord] = (),
        audit: Sequence[AuditDraft] = (),
        callbacks: Sequence[CallbackDelivery] = (),
    ) -> bool:
        """Replace the task if its stored version is `expected_version` (the stored version then
        becomes `task.version`, which the caller set to expected_version + 1), inserting the
        approvals, chaining the audit events and queueing the callbacks in the same transaction.
        Return False, writing nothing, when the version moved on (another replica won) or there is
        no such task. ValueError if `task.version` is not `expected_version + 1`."""

    @abc.abstractmethod
    async def list_tasks(
        self, *, status: str | None = None, expires_before: datetime | None = None, limit: int = 100, after_id: str | None = None
    ) -> list[TaskRecord]:
        """Tasks ordered by id, optionally only one status and/or expiring (strictly) before an
        instant; `after_id` continues a previous page (ids greater than it)."""

    @abc.abstractmethod
    async def get_approval(self, approval_id: str) -> ApprovalRecord | None: ...

    @abc.abstractmethod
    async def revoke_approval(self, approval_id: str, at: datetime, audit: Sequence[AuditDraft] = ()) -> bool:
        """Mark the approval revoked (first revocation wins); False if unknown or already revoked."""

    @abc.abstractmethod
    async def append_audit(self, events: Sequence[AuditDraft]) -> list[AuditEvent]:
        """Chain and store audit events in order (writers serialise on the chain head)."""

    @abc.abstractmethod
    async def audit_head(self) -> tuple[int, str]:
        """`(seq, hash)` of the newest chained event, `(0, GENESIS_HASH)` before the first. Kept
        apart from the events, so that `arop audit verify` notices the newest ones removed."""

    @abc.abstractmethod
    async def audit_events(self, *, after_seq: int = 0, limit: int = 1000, task_id: str | None = None) -> list[AuditEvent]:
        """Stored audit events in chain order (seq ascending) after `after_seq`; only one task's
        when `task_id` is given (its history in the reviewer UI)."""

    @abc.abstractmethod
    async def claim_callbacks(self, now: datetime, *, lease: timedelta, limit: int = 50) -> list[CallbackDelivery]:
        """Callbacks due at `now` (not delivered, not failed, next attempt reached, no live lease),
        leased for `lease` so that no other worker or replica delivers them meanwhile."""

    @abc.abstractmethod
    async def finish_callback(self, delivery: CallbackDelivery, audit: Sequence[AuditDraft] = ()) -> None:
        """Store the outcome of a delivery attempt (delivered_at, or attempts/next_attempt_at/
        last_error, or failed_at) and release its lease, chaining `audit` in the same
        transaction. LookupError (nothing written) if the delivery is unknown."""

    # -- continuation handles (the AS-facing sidecar, AROP) --------------------------------------
    # Handles are keyed by the digest of the handle (OP-27). Their notifications (CIBA ping/push,
    # DTR callbacks) are CallbackDeliveries of the handle's task, delivered by claim_callbacks
    # and finish_callback like any other.

    @abc.abstractmethod
    async def create_handle(self, handle: ContinuationHandle, audit: Sequence[AuditDraft] = ()) -> HandleCreation:
        """Insert `handle` (chaining `audit`), unless a handle with the same `dedup_key` is pending
        and unexpired at `handle.created_at` (its `expires_at` after it): then nothing is written
        and that handle is returned with `created=False` (OP-20). Terminal or expired handles never
        dedup. Concurrent creators with one dedup key create exactly one handle. ValueError if
        `handle_digest` is not a SHA-256 hex digest or the record would not read back."""

    @abc.abstractmethod
    async def get_handle(self, handle_digest: str) -> ContinuationHandle | None: ...

    @abc.abstractmethod
    async def update_handle(
        self,
        handle: ContinuationHandle,
        *,
        expected_version: int,
        audit: Sequence[AuditDraft] = (),
        callbacks: Sequence[CallbackDelivery] = (),
        grants: Sequence[IssuedGrant] = (),
    ) -> bool:
        """Replace the handle if its stored version is `expected_version` (it becomes
        `handle.version`, which the caller set to expected_version + 1), recording the grants,
        queueing the callbacks and chaining the audit events in the same transaction: a
        redemption (pending -> issued with its grant) happens at most once, and a notification is
        queued exactly when the state change commits. Return False, writing nothing, when the
        version moved on (another writer won) or there is no such handle. ValueError, writing
        nothing, if `handle.version` is not `expected_version + 1`, if a terminal state would
        change (terminal states never change), or if a grant names another handle."""

    @abc.abstractmethod
    async def handles_for_dedup_key(self, dedup_key: str) -> list[ContinuationHandle]:
        """Every handle of a dedup key, in any state (ordered by digest): before opening an
        access request the sidecar looks for the pending one to answer with (OP-20) and counts
        the resolved ones for the ARAP Idempotency-Key (D-AROP-5)."""

    @abc.abstractmethod
    async def handles_for_task(self, task_id: str) -> list[ContinuationHandle]:
        """Every handle of an ARS task, in any state (ordered by digest): when the task completes,
        the sidecar finds the handles to resolve and notify."""

    @abc.abstractmethod
    async def list_handles(
        self,
        *,
        state: str | None = None,
        binding: str | None = None,
        expires_before: datetime | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[ContinuationHandle]:
        """Handles ordered by digest, optionally only one state, one binding and/or expiring
        (strictly) before an instant; `after` continues a previous page (digests greater than
        it). The CIBA notification sweep lists pending CIBA handles only. The expiry
        worker lists pending handles expiring before now and, for each, cancels the ARS task
        first and then marks the handle expired (OP-26, OP-67): a crash in between leaves the
        handle pending, so the next run cancels again rather than never."""

    @abc.abstractmethod
    async def get_grant(self, grant_id: str) -> IssuedGrant | None:
        """A grant recorded by `update_handle`, for refresh and token exchange (OP-35..OP-37)."""

    # -- client challenge sessions (oauth-transports.md §5) ------------------------------

    @abc.abstractmethod
    async def create_challenge_session(self, session: ChallengeSession) -> None:
        """Remember a challenge until its follow-up (TX-51); the digest is fresh randomness."""

    async def get_challenge_session(self, session_digest: str) -> ChallengeSession | None:
        """The session under `session_digest`, expired or not (the caller decides, TX-52)."""
        document = await self._session_document("challenge_sessions", session_digest)
        return None if document is None else decode_challenge_session(document)

    async def take_challenge_session(self, session_digest: str) -> bool:
        """Remove the session: True for exactly one of any number of concurrent calls, the
        one whose follow-up answers it (single use, TX-51)."""
        return await self._delete_session("challenge_sessions", session_digest)

    async def purge_challenge_sessions(self, before: datetime) -> int:
        """Forget the sessions that expired (strictly) before the instant, unanswered."""
        return await self._delete_expired("challenge_sessions", before)

    # -- reviewer UI sessions (services/reviewer) -----------------------------------------

    @abc.abstractmethod
    async def save_reviewer_session(self, session: ReviewerSession) -> None:
        """Insert the session, or replace the one with its digest."""

    async def get_reviewer_session(self, session_digest: str) -> ReviewerSession | None:
        """The session under `session_digest`, expired or not (the caller decides)."""
        document = await self._session_document("reviewer_sessions", session_digest)
        return None if document is None else decode_reviewer_session(document)

    async def delete_reviewer_session(self, session_digest: str) -> bool:
        """End the session: True for exactly one of any number of concurrent calls (a sign-in
        consumes the pre-sign-in session once)."""
        return await self._delete_session("reviewer_sessions", session_digest)

    async def purge_reviewer_sessions(self, before: datetime) -> int:
        """Forget the sessions that expired (strictly) before the instant."""
        return await self._delete_expired("reviewer_sessions", before)

    # -- what each dialect provides for the session tables and other expiring rows ---------

    @abc.abstractmethod
    async def _session_document(self, table: str, session_digest: str) -> str | None:
        """The document of a session table's row (`table` one of ours, never caller input)."""

    @abc.abstractmethod
    async def _delete_session(self, table: str, session_digest: str) -> bool:
        """Delete a session table's row: True for exactly one of concurrent callers."""

    @abc.abstractmethod
    async def _delete_expired(self, table: str, before: datetime) -> int:
        """Delete the rows of `table` (one of ours, never caller input) expiring before the instant."""
