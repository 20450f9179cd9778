-- Continuation handles of the AS-facing sidecar (AROP §7) and the grants their redemptions
-- issued (OP-35..OP-37). Same logical schema as sqlite/0004_continuation_handles.sql. As in 0002,
-- each record is kept whole as a JSON (not JSONB) document, written and read verbatim, plus the
-- columns that queries filter on, derived from the document in the same statement.
--
-- A handle is keyed by the SHA-256 hex digest of the handle: the handle itself is never stored
-- (OP-27). Dedup (OP-20) finds a pending, unexpired handle by dedup_key; creators of one key
-- serialise on a transaction-scoped advisory lock of that key rather than on a unique index,
-- because a pending handle past its expiry (not yet swept by the expiry worker, which must still
-- cancel its task) must not stop a new one.

CREATE TABLE continuation_handles (
    handle_digest TEXT        PRIMARY KEY,
    dedup_key     TEXT        NOT NULL,
    state         TEXT        NOT NULL
        CHECK (state IN ('pending', 'issued', 'denied', 'cancelled', 'expired')),
    task_id       TEXT        NOT NULL REFERENCES tasks (id),
    expires_at    TIMESTAMPTZ NOT NULL,
    version       BIGINT      NOT NULL,
    document      JSON        NOT NULL
);
CREATE INDEX continuation_handles_pending_dedup ON continuation_handles (dedup_key, expires_at)
    WHERE state = 'pending';
CREATE INDEX continuation_handles_pending_expiry ON continuation_handles (expires_at)
    WHERE state = 'pending';
CREATE INDEX continuation_handles_state ON continuation_handles (state, handle_digest);
CREATE INDEX continuation_handles_task_id ON continuation_handles (task_id);

CREATE TABLE issued_grants (
    grant_id      TEXT PRIMARY KEY,
    handle_digest TEXT NOT NULL REFERENCES continuation_handles (handle_digest),
    document      JSON NOT NULL
);
CREATE INDEX issued_grants_handle_digest ON issued_grants (handle_digest);
