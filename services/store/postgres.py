"""The production store: PostgreSQL through an asyncpg connection pool, shared by replicas."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from profiles.client_challenge.challenge import ChallengeSession
from services.store.base import Store, StoreUnavailable
from services.store.codec import (
    EMPTY_PARENTS,
    EMPTY_PROPERTIES,
    already_bound,
    approval_row,
    as_utc,
    audit_row,
    callback_row,
    chain_audit,
    check_next_version,
    conjunction,
    decode_approval,
    decode_audit_event,
    decode_callback,
    decode_changes,
    decode_evaluation,
    session_row,
    decode_grant,
    decode_handle,
    decode_idempotent_task,
    decode_task,
    encode_entity,
    evaluation_row,
    grant_row,
    handle_row,
    handle_update_row,
    idempotency_row,
    is_retry,
    leased,
    released,
    revoked,
    task_row,
    update_goes_ahead,
)
from services.store.migrations import pending_migrations
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

# Errors meaning the server cannot be reached or is going away (restart, failover, full), as
# opposed to a faulty query: callers answer 503 and retry.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionRefusedError
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

_Isolation = Literal["read_committed", "repeatable_read"]

# Any fixed key works: it only has to be the same for every replica migrating this database.
_MIGRATION_LOCK_KEY = 0x41524F50  # "AROP"
# Creators of one handle dedup key serialise on the advisory lock (this class, hash of the key).
# The two-integer form is a lock space apart from the migration lock's single bigint.
_HANDLE_DEDUP_LOCK_CLASS = 0x41524F48  # "AROH"


def _dedup_lock_id(dedup_key: str) -> int:
    """The advisory lock id of a dedup key: 32 bits of its SHA-256 (two keys sharing an id only
    make their creators take turns)."""
    return int.from_bytes(hashlib.sha256(dedup_key.encode()).digest()[:4], "big", signed=True)


def _optional_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


@contextmanager
def _unavailable_on_connection_error() -> Iterator[None]:
    try:
        yield
    except _CONNECTION_ERRORS as error:
        raise StoreUnavailable(f"PostgreSQL unavailable: {error!r}") from error


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, dsn: str, *, pool_min: int = 1, pool_max: int = 10) -> None:
        self._dsn = dsn
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._pool: asyncpg.Pool | None = None

    async def open(self, *, migrate: bool = True) -> None:
        with _unavailable_on_connection_error():
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._pool_min, max_size=self._pool_max
            )
        if migrate:
            try:
                await self.migrate()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise RuntimeError("PostgresStore used before open()")
        with _unavailable_on_connection_error():
            async with self._pool.acquire() as connection:
                yield connection

    @asynccontextmanager
    async def _transaction(self, isolation: _Isolation = "read_committed") -> AsyncIterator[asyncpg.Connection]:
        async with self._connection() as connection, connection.transaction(isolation=isolation):
            yield connection

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    async def migrate(self) -> list[str]:
        async with self._transaction() as connection:
            # Held until commit: a concurrent replica waits here, then sees our versions applied.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            rows = await connection.fetch("SELECT version FROM schema_migrations")
            pending = pending_migrations(self.dialect, {row["version"] for row in rows})
            for migration in pending:
                await connection.execute(migration.sql)
                await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", migration.version)
        return [migration.version for migration in pending]

    async def applied_migrations(self) -> list[str]:
        async with self._transaction() as connection:
            if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return []
            rows = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row["version"] for row in rows]

    # -- entities ---------------------------------------------------------------------------

    @staticmethod
    async def _next_revision(connection: asyncpg.Connection) -> int:
        return await connection.fetchval("UPDATE entity_revision SET value = value + 1 RETURNING value")

    async def upsert_entities(self, entities: Sequence[EntityRecord]) -> int:
        async with self._transaction() as connection:
            revision = await self._next_revision(connection)
            await connection.executemany(
                "INSERT INTO entities (type, id, properties, parents, revision, deleted)"
                " VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, FALSE)"
                " ON CONFLICT (type, id) DO UPDATE SET properties = excluded.properties,"
                " parents = excluded.parents, revision = excluded.revision, deleted = FALSE",
                [(e.type, e.id, *encode_entity(e), revision) for e in entities],
            )
        return revision

    async def delete_entities(self, uids: Sequence[EntityUid]) -> int:
        async with self._transaction() as connection:
            revision = await self._next_revision(connection)
            await connection.executemany(
                "UPDATE entities SET deleted = TRUE, revision = $1, properties = $2::jsonb,"
                " parents = $3::jsonb WHERE type = $4 AND id = $5 AND NOT deleted",
                [(revision, EMPTY_PROPERTIES, EMPTY_PARENTS, uid.type, uid.id) for uid in uids],
            )
        return revision

    async def entity_changes(self, since_revision: int) -> EntityChanges:
        # One snapshot for the counter and the rows, so the rows are exactly those up to it.
        async with self._transaction(isolation="repeatable_read") as connection:
            revision = await connection.fetchval("SELECT value FROM entity_revision")
            # A full sync (since 0) has nothing to delete, so it skips tombstones.
            rows = await connection.fetch(
                "SELECT type, id, properties::text, parents::text, deleted FROM entities"
                " WHERE revision > $1 AND ($1 > 0 OR NOT deleted) ORDER BY revision, type, id",
                since_revision,
            )
        return decode_changes(revision, rows)

    async def entity_revision(self) -> int:
        async with self._connection() as connection:
            return await connection.fetchval("SELECT value FROM entity_revision")

    # -- secrets and keys -------------------------------------------------------------------

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        async with self._transaction() as connection:
            # A concurrent inserter makes ours wait for its commit, then do nothing; the SELECT
            # (a new snapshot under read committed) then sees the winner's value.
            await connection.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                name,
                candidate,
            )
            return await connection.fetchval("SELECT value FROM secrets WHERE name = $1", name)

    async def add_signing_key(self, key: SigningKey) -> None:
        retires_at = None if key.retires_at is None else as_utc(key.retires_at)
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, retires_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                key.kid,
                key.alg,
                key.private_jwk,
                as_utc(key.created_at),
                retires_at,
            )

    async def signing_keys(self, now: datetime) -> list[SigningKey]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT kid, alg, private_jwk, created_at, retires_at FROM signing_keys"
                " WHERE retires_at IS NULL OR retires_at > $1 ORDER BY created_at DESC, kid DESC",
                as_utc(now),
            )
        return [SigningKey(*row) for row in rows]

    async def retire_signing_keys(self, before_kid: str, retires_at: datetime) -> None:
        # "Older" follows the listing order (created_at, then kid), so ties are ordered too.
        async with self._connection() as connection:
            await connection.execute(
                "UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL"
                " AND (created_at, kid) < (SELECT created_at, kid FROM signing_keys WHERE kid = $2)",
                as_utc(retires_at),
                before_kid,
            )

    # -- access requests ----------------------------------------------------------------------
    # Read committed throughout: each statement sees what committed before it, and the rows a
    # transaction depends on are locked by the statement that reads them (the audit head FOR
    # UPDATE, the idempotency key by INSERT ... ON CONFLICT, the task by its compare-and-set
    # UPDATE, callbacks FOR UPDATE SKIP LOCKED). The audit head is always locked last, so
    # concurrent writers queue on it for the shortest time and never deadlock.

    async def record_evaluation(self, record: EvaluationRecord) -> None:
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO evaluations (evaluation_id, expires_at, document) VALUES ($1, $2, $3)",
                *evaluation_row(record, as_utc),
            )

    async def get_evaluation(self, evaluation_id: str) -> EvaluationRecord | None:
        async with self._connection() as connection:
            document = await connection.fetchval(
                "SELECT document FROM evaluations WHERE evaluation_id = $1", evaluation_id
            )
        return None if document is None else decode_evaluation(document)

    async def purge_evaluations(self, expired_before: datetime) -> int:
        return await self._delete_expired("evaluations", expired_before)

    async def _delete_expired(self, table: str, before: datetime) -> int:
        """Delete the rows of `table` (one of ours, never caller input) expiring before the instant."""
        async with self._connection() as connection:
            return await connection.fetchval(
                f"WITH purged AS (DELETE FROM {table} WHERE expires_at < $1 RETURNING 1) SELECT count(*) FROM purged",
                as_utc(before),
            )

    async def claim_token_id(self, jti: str, intent: str | None, expires_at: datetime, now: datetime) -> bool:
        async with self._transaction() as connection:
            # Inserts an unknown jti or replaces an expired one; otherwise returns nothing. A
            # concurrent first claim makes ours wait for its commit, then find its row unexpired.
            # The row stays locked either way (ON CONFLICT DO UPDATE locks it even when WHERE is
            # false), so the intent read next is the one that stays.
            claimed = await connection.fetchval(
                "INSERT INTO token_ids AS t (jti, intent, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (jti) DO UPDATE SET intent = excluded.intent, expires_at = excluded.expires_at"
                " WHERE t.expires_at < $4 RETURNING TRUE",
                jti,
                intent,
                as_utc(expires_at),
                as_utc(now),
            )
            if claimed:
                return True
            remembered = await connection.fetchval("SELECT intent FROM token_ids WHERE jti = $1", jti)
        return is_retry(remembered, intent)

    async def purge_token_ids(self, before: datetime) -> int:
        return await self._delete_expired("token_ids", before)

    @staticmethod
    async def _bound_task(
        connection: asyncpg.Connection, caller: str, key: str, now: datetime
    ) -> IdempotentTask | None:
        """The lookup `idempotent_task` and `create_task` share, so both apply one expiry rule."""
        row = await connection.fetchrow(
            "SELECT k.fingerprint, t.document FROM idempotency_keys k JOIN tasks t ON t.id = k.task_id"
            " WHERE k.caller = $1 AND k.key = $2 AND k.expires_at > $3",
            caller,
            key,
            now,
        )
        return None if row is None else decode_idempotent_task(row["fingerprint"], row["document"])

    async def idempotent_task(self, caller: str, key: str, now: datetime) -> IdempotentTask | None:
        async with self._connection() as connection:
            return await self._bound_task(connection, caller, key, as_utc(now))

    @staticmethod
    async def _chain_audit(connection: asyncpg.Connection, drafts: Sequence[AuditDraft]) -> list[AuditEvent]:
        """Chain `drafts` after the head, locked until the caller's transaction ends."""
        if not drafts:
            return []
        head = await connection.fetchrow("SELECT seq, hash FROM audit_head FOR UPDATE")
        events = chain_audit(drafts, head["seq"], head["hash"])
        await connection.executemany(
            "INSERT INTO audit_events (seq, at, kind, actor, task_id, prev_hash, hash, document)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [audit_row(event, as_utc) for event in events],
        )
        await connection.execute("UPDATE audit_head SET seq = $1, hash = $2", events[-1].seq, events[-1].hash)
        return events

    async def create_task(
        self,
        task: TaskRecord,
        *,
        idempotency: IdempotencyClaim | None,
        approvals: Sequence[ApprovalRecord] = (),
        audit: Sequence[AuditDraft] = (),
        callbacks: Sequence[CallbackDelivery] = (),
    ) -> TaskCreation:
        row = task_row(task, as_utc)
        now = as_utc(task.created_at)
        async with self._transaction() as connection:
            if idempotency is not None:
                # Claim the key first: a concurrent claimer of the same key waits here for our
                # commit, then finds the key unexpired and returns our task. The key row stays
                # locked either way (ON CONFLICT DO UPDATE locks it even when WHERE is false).
                claimed = await connection.fetchval(
                    "INSERT INTO idempotency_keys AS k (caller, key, fingerprint, task_id, expires_at)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (caller, key) DO UPDATE SET"
                    " fingerprint = excluded.fingerprint, task_id = excluded.task_id,"
                    " expires_at = excluded.expires_at WHERE k.expires_at <= $6 RETURNING TRUE",
                    *idempotency_row(idempotency, task.id, as_utc),
                    now,
                )
                if not claimed:
                    # The key is unexpired (the claim's WHERE was false) and locked until we end.
                    bound = await self._bound_task(connection, idempotency.caller, idempotency.key, now)
                    assert bound is not None
                    return already_bound(bound, idempotency)
            await connection.execute(
                "INSERT INTO tasks (id, status, requester, created_at, updated_at, expires_at, version, document)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *row,
            )
            await self._insert_with_task(connection, approvals, audit, callbacks)
        return TaskCreation(decode_task(row[-1]), True, True)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        async with self._connection() as connection:
            document = await connection.fetchval("SELECT document FROM tasks WHERE id = $1", task_id)
        return None if document is None else decode_task(document)

    async def update_task(
        self,
        task: TaskRecord,
        *,
        expected_version: int,
        approvals: Sequence[ApprovalRecord] = (),
        audit: Sequence[AuditDraft] = (),
        callbacks: Sequence[CallbackDelivery] = (),
    ) -> bool:
        check_next_version(f"task {task.id!r}", task.version, expected_version)
        task_id, status, _requester, _created_at, updated_at, expires_at, version, document = task_row(task, as_utc)
        async with self._transaction() as connection:
            # A concurrent writer of the same task waits for our commit, then re-checks the
            # version against the committed row and updates nothing.
            updated = await connection.fetchval(
                "UPDATE tasks SET status = $1, updated_at = $2, expires_at = $3, version = $4, document = $5"
                " WHERE id = $6 AND version = $7 RETURNING TRUE",
                status,
                updated_at,
                expires_at,
                version,
                document,
                task_id,
                expected_version,
            )
            if not updated:
                return False
            await self._insert_with_task(connection, approvals, audit, callbacks)
        return True

    async def _insert_with_task(
        self,
        connection: asyncpg.Connection,
        approvals: Sequence[ApprovalRecord],
        audit: Sequence[AuditDraft],
        callbacks: Sequence[CallbackDelivery],
        grants: Sequence[IssuedGrant] = (),
    ) -> None:
        """What commits together with a task or handle write: its approvals, grants, callbacks
        and audit events."""
        if grants:
            await connection.executemany(
                "INSERT INTO issued_grants (grant_id, handle_digest, document) VALUES ($1, $2, $3)",
                [grant_row(grant) for grant in grants],
            )
        if approvals:
            await connection.executemany(
                "INSERT INTO approvals (id, task_id, item_index, approved_until, revoked_at, document)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [approval_row(approval, as_utc) for approval in approvals],
            )
        if callbacks:
            await connection.executemany(
                "INSERT INTO callbacks (id, task_id, attempts, next_attempt_at, lease_until, delivered_at,"
                " failed_at, document) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                [callback_row(callback, as_utc) for callback in callbacks],
            )
        await self._chain_audit(connection, audit)

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        expires_before: datetime | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[TaskRecord]:
        filters = [("status =", status), ("expires_at <", _optional_utc(expires_before)), ("id >", after_id)]
        return [decode_task(document) for document in await self._page("tasks", "id", filters, limit)]

    async def _page(self, table: str, key: str, filters: Sequence[tuple[str, object]], limit: int) -> list[str]:
        """The documents of `table` ordered by its `key` column (both ours, never caller input),
        where every filter with a value holds (see `conjunction`)."""
        where, parameters = conjunction(filters, lambda n: f"${n}")
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT document FROM {table}{where} ORDER BY {key} LIMIT ${len(parameters) + 1}", *parameters, limit
            )
        return [row["document"] for row in rows]

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        async with self._connection() as connection:
            document = await connection.fetchval("SELECT document FROM approvals WHERE id = $1", approval_id)
        return None if document is None else decode_approval(document)

    async def revoke_approval(self, approval_id: str, at: datetime, audit: Sequence[AuditDraft] = ()) -> bool:
        async with self._transaction() as connection:
            # FOR UPDATE makes a concurrent revoker wait, then re-read the revoked row and stop.
            document = await connection.fetchval(
                "SELECT document FROM approvals WHERE id = $1 AND revoked_at IS NULL FOR UPDATE", approval_id
            )
            if document is None:
                return False
            approval = revoked(decode_approval(document), at)
            row = approval_row(approval, as_utc)
            await connection.execute(
                "UPDATE approvals SET revoked_at = $1, document = $2 WHERE id = $3", row[4], row[5], approval_id
            )
            await self._chain_audit(connection, audit)
        return True

    async def append_audit(self, events: Sequence[AuditDraft]) -> list[AuditEvent]:
        if not events:
            return []
        async with self._transaction() as connection:
            return await self._chain_audit(connection, events)

    async def audit_head(self) -> tuple[int, str]:
        async with self._connection() as connection:
            head = await connection.fetchrow("SELECT seq, hash FROM audit_head")
        return head["seq"], head["hash"]

    async def audit_events(self, *, after_seq: int = 0, limit: int = 1000, task_id: str | None = None) -> list[AuditEvent]:
        async with self._connection() as connection:
            if task_id is None:
                rows = await connection.fetch("SELECT document FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2", after_seq, limit)
            else:
                rows = await connection.fetch(
                    "SELECT document FROM audit_events WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", task_id, after_seq, limit
                )
        return [decode_audit_event(row["document"]) for row in rows]

    async def claim_callbacks(self, now: datetime, *, lease: timedelta, limit: int = 50) -> list[CallbackDelivery]:
        at = as_utc(now)
        lease_until = at + lease
        async with self._transaction() as connection:
            # SKIP LOCKED: a concurrent claimer passes over the rows we are leasing; once we
            # commit, the re-checked WHERE sees our live lease and excludes them.
            rows = await connection.fetch(
                "SELECT document FROM callbacks WHERE delivered_at IS NULL AND failed_at IS NULL"
                " AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)"
                " ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                at,
                limit,
            )
            claimed = [leased(decode_callback(row["document"]), lease_until) for row in rows]
            if claimed:
                await connection.executemany(
                    "UPDATE callbacks SET lease_until = $1, document = $2 WHERE id = $3",
                    [(lease_until, callback_row(delivery, as_utc)[-1], delivery.id) for delivery in claimed],
                )
        return claimed

    async def finish_callback(self, delivery: CallbackDelivery, audit: Sequence[AuditDraft] = ()) -> None:
        (id_, _task_id, attempts, next_attempt_at, lease_until, delivered_at, failed_at, document) = callback_row(
            released(delivery), as_utc
        )
        async with self._transaction() as connection:
            status = await connection.execute(
                "UPDATE callbacks SET attempts = $1, next_attempt_at = $2, lease_until = $3, delivered_at = $4,"
                " failed_at = $5, document = $6 WHERE id = $7",
                attempts,
                next_attempt_at,
                lease_until,
                delivered_at,
                failed_at,
                document,
                id_,
            )
            if status != "UPDATE 1":
                raise LookupError(f"no callback delivery {id_!r}")
            await self._chain_audit(connection, audit)

    # -- continuation handles -----------------------------------------------------------------
    # Creators of one dedup key take turns on its advisory lock, held to commit, so each one's
    # dedup query (a new snapshot under read committed) sees every handle created before it.
    # Updaters lock the handle row (FOR UPDATE) and compare versions on the committed row.

    async def create_handle(self, handle: ContinuationHandle, audit: Sequence[AuditDraft] = ()) -> HandleCreation:
        row = handle_row(handle, as_utc)
        async with self._transaction() as connection:
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", _HANDLE_DEDUP_LOCK_CLASS, _dedup_lock_id(handle.dedup_key)
            )
            document = await connection.fetchval(
                "SELECT document FROM continuation_handles WHERE dedup_key = $1 AND state = 'pending'"
                " AND expires_at > $2 ORDER BY expires_at DESC, handle_digest LIMIT 1",
                handle.dedup_key,
                as_utc(handle.created_at),
            )
            if document is not None:
                return HandleCreation(decode_handle(document), False)
            await connection.execute(
                "INSERT INTO continuation_handles (handle_digest, dedup_key, state, binding, task_id, expires_at,"
                " version, document) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *row,
            )
            await self._chain_audit(connection, audit)
        return HandleCreation(decode_handle(row[-1]), True)

    async def get_handle(self, handle_digest: str) -> ContinuationHandle | None:
        async with self._connection() as connection:
            document = await connection.fetchval(
                "SELECT document FROM continuation_handles WHERE handle_digest = $1", handle_digest
            )
        return None if document is None else decode_handle(document)

    async def update_handle(
        self,
        handle: ContinuationHandle,
        *,
        expected_version: int,
        audit: Sequence[AuditDraft] = (),
        callbacks: Sequence[CallbackDelivery] = (),
        grants: Sequence[IssuedGrant] = (),
    ) -> bool:
        digest, dedup_key, state, binding, task_id, expires_at, version, document = handle_update_row(
            handle, expected_version, grants, as_utc
        )
        async with self._transaction() as connection:
            # A concurrent writer of the same handle makes us wait for its commit; we then read
            # its version and lose.
            stored = await connection.fetchrow(
                "SELECT state, version FROM continuation_handles WHERE handle_digest = $1 FOR UPDATE", digest
            )
            if not update_goes_ahead(handle, stored, expected_version):
                return False
            await connection.execute(
                "UPDATE continuation_handles SET dedup_key = $1, state = $2, binding = $3, task_id = $4,"
                " expires_at = $5, version = $6, document = $7 WHERE handle_digest = $8",
                dedup_key,
                state,
                binding,
                task_id,
                expires_at,
                version,
                document,
                digest,
            )
            await self._insert_with_task(connection, (), audit, callbacks, grants)
        return True

    async def handles_for_dedup_key(self, dedup_key: str) -> list[ContinuationHandle]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT document FROM continuation_handles WHERE dedup_key = $1 ORDER BY handle_digest", dedup_key
            )
        return [decode_handle(row["document"]) for row in rows]

    async def handles_for_task(self, task_id: str) -> list[ContinuationHandle]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT document FROM continuation_handles WHERE task_id = $1 ORDER BY handle_digest", task_id
            )
        return [decode_handle(row["document"]) for row in rows]

    async def list_handles(
        self,
        *,
        state: str | None = None,
        binding: str | None = None,
        expires_before: datetime | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[ContinuationHandle]:
        filters = [("state =", state), ("binding =", binding), ("expires_at <", _optional_utc(expires_before)), ("handle_digest >", after)]
        documents = await self._page("continuation_handles", "handle_digest", filters, limit)
        return [decode_handle(document) for document in documents]

    async def get_grant(self, grant_id: str) -> IssuedGrant | None:
        async with self._connection() as connection:
            document = await connection.fetchval("SELECT document FROM issued_grants WHERE grant_id = $1", grant_id)
        return None if document is None else decode_grant(document)

    async def create_challenge_session(self, session: ChallengeSession) -> None:
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO challenge_sessions (session_digest, expires_at, document) VALUES ($1, $2, $3)",
                *session_row(session, as_utc),
            )

    async def _session_document(self, table: str, session_digest: str) -> str | None:
        """The document of a session table's row (`table` one of ours, never caller input)."""
        async with self._connection() as connection:
            document: str | None = await connection.fetchval(f"SELECT document FROM {table} WHERE session_digest = $1", session_digest)
        return document

    async def _delete_session(self, table: str, session_digest: str) -> bool:
        """Delete a session table's row: True for exactly one of concurrent callers."""
        async with self._connection() as connection:
            status = await connection.execute(f"DELETE FROM {table} WHERE session_digest = $1", session_digest)
        return bool(status == "DELETE 1")

    async def save_reviewer_session(self, session: ReviewerSession) -> None:
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO reviewer_sessions (session_digest, expires_at, document) VALUES ($1, $2, $3)"
                " ON CONFLICT (session_digest) DO UPDATE SET expires_at = excluded.expires_at, document = excluded.document",
                *session_row(session, as_utc),
            )
