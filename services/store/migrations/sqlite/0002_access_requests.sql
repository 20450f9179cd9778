-- Access requests (ARAP): recorded evaluations, tasks, approvals, idempotency keys, the audit
-- chain and callbacks to deliver. Same logical schema as postgres/0002_access_requests.sql.
-- Each record is kept whole as a JSON document (msgspec-encoded text, written and read verbatim
-- so that 1 and 1.0, absent and null survive), plus the columns that queries filter or sort on,
-- derived from the document in the same statement. Timestamps as in 0001: ISO-8601 UTC text
-- with +00:00 and microseconds, so that text order is time order.

CREATE TABLE evaluations (
    evaluation_id TEXT PRIMARY KEY,
    expires_at    TEXT NOT NULL,
    document      TEXT NOT NULL
);
CREATE INDEX evaluations_expires_at ON evaluations (expires_at);

CREATE TABLE tasks (
    id         TEXT    PRIMARY KEY,
    status     TEXT    NOT NULL,
    requester  TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    expires_at TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    document   TEXT    NOT NULL
);
CREATE INDEX tasks_status_id ON tasks (status, id);
CREATE INDEX tasks_expires_at ON tasks (expires_at, id);

CREATE TABLE approvals (
    id             TEXT    PRIMARY KEY,
    task_id        TEXT    NOT NULL REFERENCES tasks (id),
    item_index     INTEGER NOT NULL,
    approved_until TEXT    NOT NULL,
    revoked_at     TEXT,
    document       TEXT    NOT NULL
);
CREATE INDEX approvals_task_id ON approvals (task_id);

-- One row per (caller, Idempotency-Key). The key is claimed before its task is inserted (so a
-- concurrent claimer waits on it), hence the deferred foreign key.
CREATE TABLE idempotency_keys (
    caller      TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_id     TEXT NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- The hash-chained audit log. Every writer reads and advances audit_head inside its (write-
-- locked) transaction, so seq has no gaps and the chain never forks.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    at        TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    task_id   TEXT,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    document  TEXT    NOT NULL
);
CREATE INDEX audit_events_task_id ON audit_events (task_id, seq);

CREATE TABLE audit_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT    NOT NULL
);
INSERT INTO audit_head (singleton, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE callbacks (
    id              TEXT    PRIMARY KEY,
    task_id         TEXT    NOT NULL REFERENCES tasks (id),
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT    NOT NULL,
    lease_until     TEXT,
    delivered_at    TEXT,
    failed_at       TEXT,
    document        TEXT    NOT NULL
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX callbacks_task_id ON callbacks (task_id);
