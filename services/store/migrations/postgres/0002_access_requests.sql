-- Access requests (ARAP): recorded evaluations, tasks, approvals, idempotency keys, the audit
-- chain and callbacks to deliver. Same logical schema as sqlite/0002_access_requests.sql.
-- Each record is kept whole as a JSON document plus the columns that queries filter or sort on,
-- derived from the document in the same statement.
--
-- Documents are JSON, not JSONB: jsonb re-types numbers (1e100 and 1e16 come back as integers,
-- -0.0 as 0.0), sorts keys, drops duplicates and refuses "\u0000", while ARAP compares subject,
-- resource, action and context structurally and the audit hash covers `data` byte for byte.
-- JSON keeps the text exactly as written (and still validates it and allows -> and ->>).

CREATE TABLE evaluations (
    evaluation_id TEXT        PRIMARY KEY,
    expires_at    TIMESTAMPTZ NOT NULL,
    document      JSON        NOT NULL
);
CREATE INDEX evaluations_expires_at ON evaluations (expires_at);

CREATE TABLE tasks (
    id         TEXT        PRIMARY KEY,
    status     TEXT        NOT NULL,
    requester  TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    version    BIGINT      NOT NULL,
    document   JSON        NOT NULL
);
CREATE INDEX tasks_status_id ON tasks (status, id);
CREATE INDEX tasks_expires_at ON tasks (expires_at, id);

CREATE TABLE approvals (
    id             TEXT        PRIMARY KEY,
    task_id        TEXT        NOT NULL REFERENCES tasks (id),
    item_index     INTEGER     NOT NULL,
    approved_until TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    document       JSON        NOT NULL
);
CREATE INDEX approvals_task_id ON approvals (task_id);

-- One row per (caller, Idempotency-Key). The key is claimed before its task is inserted (so a
-- concurrent claimer waits on it), hence the deferred foreign key.
CREATE TABLE idempotency_keys (
    caller      TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    fingerprint TEXT        NOT NULL,
    task_id     TEXT        NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- The hash-chained audit log. Every writer locks audit_head (SELECT ... FOR UPDATE) inside its
-- transaction and advances it, so seq has no gaps and the chain never forks.
CREATE TABLE audit_events (
    seq       BIGINT      PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL,
    kind      TEXT        NOT NULL,
    actor     TEXT        NOT NULL,
    task_id   TEXT,
    prev_hash TEXT        NOT NULL,
    hash      TEXT        NOT NULL,
    document  JSON        NOT NULL
);
CREATE INDEX audit_events_task_id ON audit_events (task_id, seq);

CREATE TABLE audit_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    seq       BIGINT  NOT NULL,
    hash      TEXT    NOT NULL
);
INSERT INTO audit_head (singleton, seq, hash)
VALUES (TRUE, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE callbacks (
    id              TEXT        PRIMARY KEY,
    task_id         TEXT        NOT NULL REFERENCES tasks (id),
    attempts        INTEGER     NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_until     TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    failed_at       TIMESTAMPTZ,
    document        JSON        NOT NULL
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX callbacks_task_id ON callbacks (task_id);
