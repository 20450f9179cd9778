"""The embedded store: one SQLite file, shared by every worker process of one host.

Each store holds one connection, in autocommit mode so that transactions are explicit: writes
take the database write lock up front (`BEGIN IMMEDIATE`), which makes concurrent processes
queue on `busy_timeout` instead of failing on a lock upgrade half-way through a transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite

from profiles.client_challenge.challenge import ChallengeSession
from services.store.base import Store, StoreUnavailable
from services.store.codec import (
    EMPTY_PARENTS,
    EMPTY_PROPERTIES,
    already_bound,
    approval_row,
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
    format_time,
    grant_row,
    handle_row,
    handle_update_row,
    idempotency_row,
    is_retry,
    leased,
    parse_time,
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

BUSY_TIMEOUT_MS = 5000

# Primary result codes meaning "the database cannot be used right now" rather than a bug:
# another process held the write lock past busy_timeout, or the file cannot be opened.
_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN})


@contextmanager
def _unavailable_when_locked() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as error:
        # Errors raised by Python's sqlite3 itself carry no result code.
        if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _UNAVAILABLE_CODES:
            raise StoreUnavailable(f"SQLite database unavailable: {error}") from error
        raise


# Fixed precision keeps text order equal to time order.
_format_time = format_time
_parse_time = parse_time


def _parse_optional_time(text: str | None) -> datetime | None:
    return None if text is None else _parse_time(text)


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else _format_time(moment)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements: `executescript` would COMMIT our open transaction."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # One connection cannot interleave transactions, so this store's coroutines take turns.
        self._turn = asyncio.Lock()

    async def open(self, *, migrate: bool = True) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _unavailable_when_locked():
            db = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                # busy_timeout first: switching to WAL needs a lock another process may hold.
                await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                await db.execute("PRAGMA journal_mode = WAL")
                await db.execute("PRAGMA foreign_keys = ON")
            except BaseException:
                await db.close()
                raise
        self._db = db
        if migrate:
            try:
                await self.migrate()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction; a read-only one still gives its statements a single snapshot."""
        if self._db is None:
            raise RuntimeError("SQLiteStore used before open()")
        db = self._db
        async with self._turn:
            with _unavailable_when_locked():
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    await db.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT, which leaves the transaction open.
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise

    async def ping(self) -> None:
        try:
            async with self._transaction(write=False) as db:
                await db.execute_fetchall("SELECT 1")
        except sqlite3.Error as error:
            raise StoreUnavailable(f"SQLite database unavailable: {error}") from error

    async def migrate(self) -> list[str]:
        async with self._transaction(write=True) as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            # Read inside the write lock: another process may have migrated while we waited.
            rows = await db.execute_fetchall("SELECT version FROM schema_migrations")
            pending = pending_migrations(self.dialect, {version for (version,) in rows})
            for migration in pending:
                for statement in _statements(migration.sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (migration.version, _format_time(datetime.now(UTC))),
                )
        return [migration.version for migration in pending]

    async def applied_migrations(self) -> list[str]:
        async with self._transaction(write=False) as db:
            exists = await db.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            )
            if not exists:
                return []
            rows = await db.execute_fetchall("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in rows]

    # -- entities ---------------------------------------------------------------------------

    @staticmethod
    async def _next_revision(db: aiosqlite.Connection) -> int:
        rows = await db.execute_fetchall("UPDATE entity_revision SET value = value + 1 RETURNING value")
        return rows[0][0]

    async def upsert_entities(self, entities: Sequence[EntityRecord]) -> int:
        async with self._transaction(write=True) as db:
            revision = await self._next_revision(db)
            await db.executemany(
                "INSERT INTO entities (type, id, properties, parents, revision, deleted)"
                " VALUES (?, ?, ?, ?, ?, 0)"
                " ON CONFLICT (type, id) DO UPDATE SET properties = excluded.properties,"
                " parents = excluded.parents, revision = excluded.revision, deleted = 0",
                [(e.type, e.id, *encode_entity(e), revision) for e in entities],
            )
        return revision

    async def delete_entities(self, uids: Sequence[EntityUid]) -> int:
        async with self._transaction(write=True) as db:
            revision = await self._next_revision(db)
            await db.executemany(
                "UPDATE entities SET deleted = 1, revision = ?, properties = ?, parents = ?"
                " WHERE type = ? AND id = ? AND deleted = 0",
                [(revision, EMPTY_PROPERTIES, EMPTY_PARENTS, uid.type, uid.id) for uid in uids],
            )
        return revision

    async def entity_changes(self, since_revision: int) -> EntityChanges:
        async with self._transaction(write=False) as db:
            revision = (await db.execute_fetchall("SELECT value FROM entity_revision"))[0][0]
            # A full sync (since 0) has nothing to delete, so it skips tombstones.
            rows = await db.execute_fetchall(
                "SELECT type, id, properties, parents, deleted FROM entities"
                " WHERE revision > ? AND (? > 0 OR deleted = 0) ORDER BY revision, type, id",
                (since_revision, since_revision),
            )
        return decode_changes(revision, rows)

    async def entity_revision(self) -> int:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall("SELECT value FROM entity_revision")
        return rows[0][0]

    # -- secrets and keys -------------------------------------------------------------------

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, candidate, _format_time(datetime.now(UTC))),
            )
            rows = await db.execute_fetchall("SELECT value FROM secrets WHERE name = ?", (name,))
        return rows[0][0]

    async def add_signing_key(self, key: SigningKey) -> None:
        retires_at = None if key.retires_at is None else _format_time(key.retires_at)
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, retires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key.kid, key.alg, key.private_jwk, _format_time(key.created_at), retires_at),
            )

    async def signing_keys(self, now: datetime) -> list[SigningKey]:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT kid, alg, private_jwk, created_at, retires_at FROM signing_keys"
                " WHERE retires_at IS NULL OR retires_at > ? ORDER BY created_at DESC, kid DESC",
                (_format_time(now),),
            )
        return [
            SigningKey(kid, alg, jwk, _parse_time(created_at), _parse_optional_time(retires_at))
            for kid, alg, jwk, created_at, retires_at in rows
        ]

    async def retire_signing_keys(self, before_kid: str, retires_at: datetime) -> None:
        # "Older" follows the listing order (created_at, then kid), so ties are ordered too.
        async with self._transaction(write=True) as db:
            await db.execute(
                "UPDATE signing_keys SET retires_at = ? WHERE retires_at IS NULL"
                " AND (created_at, kid) < (SELECT created_at, kid FROM signing_keys WHERE kid = ?)",
                (_format_time(retires_at), before_kid),
            )

    # -- access requests ----------------------------------------------------------------------
    # Write transactions take the database write lock up front (BEGIN IMMEDIATE), so each one
    # sees and changes the database alone: reads inside them are never stale, and the audit
    # head, idempotency keys and callback leases need no further locking.

    async def record_evaluation(self, record: EvaluationRecord) -> None:
        row = evaluation_row(record, _format_time)
        async with self._transaction(write=True) as db:
            await db.execute("INSERT INTO evaluations (evaluation_id, expires_at, document) VALUES (?, ?, ?)", row)

    async def get_evaluation(self, evaluation_id: str) -> EvaluationRecord | None:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT document FROM evaluations WHERE evaluation_id = ?", (evaluation_id,)
            )
        return decode_evaluation(rows[0][0]) if rows else None

    async def purge_evaluations(self, expired_before: datetime) -> int:
        return await self._delete_expired("evaluations", expired_before)

    async def _delete_expired(self, table: str, before: datetime) -> int:
        """Delete the rows of `table` (one of ours, never caller input) expiring before the instant."""
        async with self._transaction(write=True) as db:
            cursor = await db.execute(f"DELETE FROM {table} WHERE expires_at < ?", (_format_time(before),))
            return cursor.rowcount

    async def claim_token_id(self, jti: str, intent: str | None, expires_at: datetime, now: datetime) -> bool:
        async with self._transaction(write=True) as db:
            # Inserts an unknown jti or replaces an expired one; otherwise returns no row.
            claimed = await db.execute_fetchall(
                "INSERT INTO token_ids AS t (jti, intent, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (jti) DO UPDATE SET intent = excluded.intent, expires_at = excluded.expires_at"
                " WHERE t.expires_at < ? RETURNING 1",
                (jti, intent, _format_time(expires_at), _format_time(now)),
            )
            if claimed:
                return True
            [(remembered,)] = await db.execute_fetchall("SELECT intent FROM token_ids WHERE jti = ?", (jti,))
        return is_retry(remembered, intent)

    async def purge_token_ids(self, before: datetime) -> int:
        return await self._delete_expired("token_ids", before)

    @staticmethod
    async def _bound_task(db: aiosqlite.Connection, caller: str, key: str, now: str) -> IdempotentTask | None:
        """The lookup `idempotent_task` and `create_task` share, so both apply one expiry rule."""
        rows = await db.execute_fetchall(
            "SELECT k.fingerprint, t.document FROM idempotency_keys k JOIN tasks t ON t.id = k.task_id"
            " WHERE k.caller = ? AND k.key = ? AND k.expires_at > ?",
            (caller, key, now),
        )
        return decode_idempotent_task(*rows[0]) if rows else None

    async def idempotent_task(self, caller: str, key: str, now: datetime) -> IdempotentTask | None:
        async with self._transaction(write=False) as db:
            return await self._bound_task(db, caller, key, _format_time(now))

    @staticmethod
    async def _audit_head(db: aiosqlite.Connection) -> tuple[int, str]:
        [(seq, hash_)] = await db.execute_fetchall("SELECT seq, hash FROM audit_head")
        return seq, hash_

    @classmethod
    async def _chain_audit(cls, db: aiosqlite.Connection, drafts: Sequence[AuditDraft]) -> list[AuditEvent]:
        """Chain `drafts` after the head and advance it (inside the caller's write transaction)."""
        if not drafts:
            return []
        events = chain_audit(drafts, *await cls._audit_head(db))
        await db.executemany(
            "INSERT INTO audit_events (seq, at, kind, actor, task_id, prev_hash, hash, document)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [audit_row(event, _format_time) for event in events],
        )
        await db.execute("UPDATE audit_head SET seq = ?, hash = ?", (events[-1].seq, events[-1].hash))
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
        row = task_row(task, _format_time)
        now = _format_time(task.created_at)
        key_row = None if idempotency is None else idempotency_row(idempotency, task.id, _format_time)
        async with self._transaction(write=True) as db:
            if idempotency is not None:
                bound = await self._bound_task(db, idempotency.caller, idempotency.key, now)
                if bound is not None:
                    return already_bound(bound, idempotency)
                await db.execute(
                    "INSERT INTO idempotency_keys (caller, key, fingerprint, task_id, expires_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (caller, key) DO UPDATE SET"
                    " fingerprint = excluded.fingerprint, task_id = excluded.task_id,"
                    " expires_at = excluded.expires_at",
                    key_row,
                )
            await db.execute(
                "INSERT INTO tasks (id, status, requester, created_at, updated_at, expires_at, version, document)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            await self._insert_with_task(db, approvals, audit, callbacks)
        return TaskCreation(decode_task(row[-1]), True, True)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall("SELECT document FROM tasks WHERE id = ?", (task_id,))
        return decode_task(rows[0][0]) if rows else None

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
        task_id, status, _requester, _created_at, updated_at, expires_at, version, document = task_row(
            task, _format_time
        )
        async with self._transaction(write=True) as db:
            cursor = await db.execute(
                "UPDATE tasks SET status = ?, updated_at = ?, expires_at = ?, version = ?, document = ?"
                " WHERE id = ? AND version = ?",
                (status, updated_at, expires_at, version, document, task_id, expected_version),
            )
            if cursor.rowcount != 1:
                return False
            await self._insert_with_task(db, approvals, audit, callbacks)
        return True

    async def _insert_with_task(
        self,
        db: aiosqlite.Connection,
        approvals: Sequence[ApprovalRecord],
        audit: Sequence[AuditDraft],
        callbacks: Sequence[CallbackDelivery],
        grants: Sequence[IssuedGrant] = (),
    ) -> None:
        """What commits together with a task or handle write: its approvals, grants, callbacks
        and audit events."""
        await db.executemany(
            "INSERT INTO issued_grants (grant_id, handle_digest, document) VALUES (?, ?, ?)",
            [grant_row(grant) for grant in grants],
        )
        await db.executemany(
            "INSERT INTO approvals (id, task_id, item_index, approved_until, revoked_at, document)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [approval_row(approval, _format_time) for approval in approvals],
        )
        await db.executemany(
            "INSERT INTO callbacks (id, task_id, attempts, next_attempt_at, lease_until, delivered_at,"
            " failed_at, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [callback_row(callback, _format_time) for callback in callbacks],
        )
        await self._chain_audit(db, audit)

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        expires_before: datetime | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[TaskRecord]:
        filters = [("status =", status), ("expires_at <", _optional_time(expires_before)), ("id >", after_id)]
        return [decode_task(document) for document in await self._page("tasks", "id", filters, limit)]

    async def _page(self, table: str, key: str, filters: Sequence[tuple[str, object]], limit: int) -> list[str]:
        """The documents of `table` ordered by its `key` column (both ours, never caller input),
        where every filter with a value holds (see `conjunction`)."""
        where, parameters = conjunction(filters, lambda _: "?")
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT document FROM {table}{where} ORDER BY {key} LIMIT ?", (*parameters, limit)
            )
        return [document for (document,) in rows]

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall("SELECT document FROM approvals WHERE id = ?", (approval_id,))
        return decode_approval(rows[0][0]) if rows else None

    async def revoke_approval(self, approval_id: str, at: datetime, audit: Sequence[AuditDraft] = ()) -> bool:
        revoked_at = _format_time(at)
        async with self._transaction(write=True) as db:
            rows = await db.execute_fetchall(
                "SELECT document FROM approvals WHERE id = ? AND revoked_at IS NULL", (approval_id,)
            )
            if not rows:
                return False
            approval = revoked(decode_approval(rows[0][0]), at)
            await db.execute(
                "UPDATE approvals SET revoked_at = ?, document = ? WHERE id = ?",
                (revoked_at, approval_row(approval, _format_time)[-1], approval_id),
            )
            await self._chain_audit(db, audit)
        return True

    async def append_audit(self, events: Sequence[AuditDraft]) -> list[AuditEvent]:
        if not events:
            return []
        async with self._transaction(write=True) as db:
            return await self._chain_audit(db, events)

    async def audit_head(self) -> tuple[int, str]:
        async with self._transaction(write=False) as db:
            return await self._audit_head(db)

    async def audit_events(self, *, after_seq: int = 0, limit: int = 1000, task_id: str | None = None) -> list[AuditEvent]:
        async with self._transaction(write=False) as db:
            if task_id is None:
                rows = await db.execute_fetchall("SELECT document FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
            else:
                rows = await db.execute_fetchall(
                    "SELECT document FROM audit_events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?", (task_id, after_seq, limit)
                )
        return [decode_audit_event(document) for (document,) in rows]

    async def claim_callbacks(self, now: datetime, *, lease: timedelta, limit: int = 50) -> list[CallbackDelivery]:
        at = _format_time(now)
        lease_until = now + lease
        async with self._transaction(write=True) as db:
            rows = await db.execute_fetchall(
                "SELECT document FROM callbacks WHERE delivered_at IS NULL AND failed_at IS NULL"
                " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
                " ORDER BY next_attempt_at, id LIMIT ?",
                (at, at, limit),
            )
            claimed = [leased(decode_callback(document), lease_until) for (document,) in rows]
            await db.executemany(
                "UPDATE callbacks SET lease_until = ?, document = ? WHERE id = ?",
                [(_format_time(lease_until), callback_row(d, _format_time)[-1], d.id) for d in claimed],
            )
        return claimed

    async def finish_callback(self, delivery: CallbackDelivery, audit: Sequence[AuditDraft] = ()) -> None:
        (id_, _task_id, attempts, next_attempt_at, lease_until, delivered_at, failed_at, document) = callback_row(
            released(delivery), _format_time
        )
        async with self._transaction(write=True) as db:
            cursor = await db.execute(
                "UPDATE callbacks SET attempts = ?, next_attempt_at = ?, lease_until = ?, delivered_at = ?,"
                " failed_at = ?, document = ? WHERE id = ?",
                (attempts, next_attempt_at, lease_until, delivered_at, failed_at, document, id_),
            )
            if cursor.rowcount != 1:
                raise LookupError(f"no callback delivery {id_!r}")
            await self._chain_audit(db, audit)

    # -- continuation handles -----------------------------------------------------------------
    # The same write lock makes dedup and the version compare-and-set exact: a creator reads the
    # pending handles of its dedup key and inserts with no other writer in between.

    async def create_handle(self, handle: ContinuationHandle, audit: Sequence[AuditDraft] = ()) -> HandleCreation:
        row = handle_row(handle, _format_time)
        async with self._transaction(write=True) as db:
            rows = await db.execute_fetchall(
                "SELECT document FROM continuation_handles WHERE dedup_key = ? AND state = 'pending'"
                " AND expires_at > ? ORDER BY expires_at DESC, handle_digest LIMIT 1",
                (handle.dedup_key, _format_time(handle.created_at)),
            )
            if rows:
                return HandleCreation(decode_handle(rows[0][0]), False)
            await db.execute(
                "INSERT INTO continuation_handles (handle_digest, dedup_key, state, binding, task_id, expires_at,"
                " version, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            await self._chain_audit(db, audit)
        return HandleCreation(decode_handle(row[-1]), True)

    async def get_handle(self, handle_digest: str) -> ContinuationHandle | None:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT document FROM continuation_handles WHERE handle_digest = ?", (handle_digest,)
            )
        return decode_handle(rows[0][0]) if rows else None

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
            handle, expected_version, grants, _format_time
        )
        async with self._transaction(write=True) as db:
            stored = await db.execute_fetchall(
                "SELECT state, version FROM continuation_handles WHERE handle_digest = ?", (digest,)
            )
            if not update_goes_ahead(handle, stored[0] if stored else None, expected_version):
                return False
            await db.execute(
                "UPDATE continuation_handles SET dedup_key = ?, state = ?, binding = ?, task_id = ?, expires_at = ?,"
                " version = ?, document = ? WHERE handle_digest = ?",
                (dedup_key, state, binding, task_id, expires_at, version, document, digest),
            )
            await self._insert_with_task(db, (), audit, callbacks, grants)
        return True

    async def handles_for_dedup_key(self, dedup_key: str) -> list[ContinuationHandle]:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT document FROM continuation_handles WHERE dedup_key = ? ORDER BY handle_digest", (dedup_key,)
            )
        return [decode_handle(document) for (document,) in rows]

    async def handles_for_task(self, task_id: str) -> list[ContinuationHandle]:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT document FROM continuation_handles WHERE task_id = ? ORDER BY handle_digest", (task_id,)
            )
        return [decode_handle(document) for (document,) in rows]

    async def list_handles(
        self,
        *,
        state: str | None = None,
        binding: str | None = None,
        expires_before: datetime | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[ContinuationHandle]:
        filters = [("state =", state), ("binding =", binding), ("expires_at <", _optional_time(expires_before)), ("handle_digest >", after)]
        documents = await self._page("continuation_handles", "handle_digest", filters, limit)
        return [decode_handle(document) for document in documents]

    async def get_grant(self, grant_id: str) -> IssuedGrant | None:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall("SELECT document FROM issued_grants WHERE grant_id = ?", (grant_id,))
        return decode_grant(rows[0][0]) if rows else None

    async def create_challenge_session(self, session: ChallengeSession) -> None:
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO challenge_sessions (session_digest, expires_at, document) VALUES (?, ?, ?)",
                session_row(session, _format_time),
            )

    async def _session_document(self, table: str, session_digest: str) -> str | None:
        """The document of a session table's row (`table` one of ours, never caller input)."""
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(f"SELECT document FROM {table} WHERE session_digest = ?", (session_digest,))
        return rows[0][0] if rows else None

    async def _delete_session(self, table: str, session_digest: str) -> bool:
        """Delete a session table's row: True for exactly one of concurrent callers."""
        async with self._transaction(write=True) as db:
            cursor = await db.execute(f"DELETE FROM {table} WHERE session_digest = ?", (session_digest,))
            return cursor.rowcount == 1

    async def save_reviewer_session(self, session: ReviewerSession) -> None:
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO reviewer_sessions (session_digest, expires_at, document) VALUES (?, ?, ?)"
                " ON CONFLICT (session_digest) DO UPDATE SET expires_at = excluded.expires_at, document = excluded.document",
                session_row(session, _format_time),
            )
