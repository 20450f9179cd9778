-- Continuation handles of the AS-facing sidecar (AROP §7) and the grants their redemptions
-- issued (OP-35..OP-37). Same logical schema as postgres/0004_continuation_handles.sql. As in
-- 0002, each record is kept whole as a JSON document (msgspec-encoded text, written and read
-- verbatim), plus the columns that queries filter on, derived from the document in the same
-- statement. Timestamps as in 0001: ISO-8601 UTC text with +00:00 and microseconds, so that
-- text order is time order.
--
-- A handle is keyed by the SHA-256 hex digest of the handle: the handle itself is never stored
-- (OP-27). Dedup (OP-20) finds a pending, unexpired handle by dedup_key inside the write-locked
-- transaction of the creator, so creators of one key cannot both insert. No unique index: a
-- pending handle past its expiry (not yet swept by the expiry worker, which must still cancel
-- its task) must not stop a new one.

CREATE TABLE continuation_handles (
    handle_digest TEXT    PRIMARY KEY,
    dedup_key     TEXT    NOT NULL,
    state         TEXT    NOT NULL
        CHECK (state IN ('pending', 'issued', 'denied', 'cancelled', 'expired')),
    task_id       TEXT    NOT NULL REFERENCES tasks (id),
    expires_at    TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    document      TEXT    NOT NULL
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
    document      TEXT NOT NULL
);
CREATE INDEX issued_grants_handle_digest ON issued_grants (handle_digest);
