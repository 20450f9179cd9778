-- Same logical schema as postgres/0001_initial.sql. JSON columns hold msgspec-encoded text,
-- timestamps hold ISO-8601 UTC text with an explicit +00:00 and fixed microsecond precision so
-- that they sort chronologically as text.

-- Entities of the policy information point. Deleted entities stay as tombstones (deleted = 1)
-- so that instances syncing incrementally learn about the deletion.
CREATE TABLE entities (
    type       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    properties TEXT    NOT NULL,
    parents    TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    PRIMARY KEY (type, id)
);
CREATE INDEX entities_revision ON entities (revision);

-- One row: every entity write increments it first, so writers serialise on it and revisions
-- follow commit order.
CREATE TABLE entity_revision (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    value     INTEGER NOT NULL
);
INSERT INTO entity_revision (singleton, value) VALUES (1, 0);

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    private_jwk TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    retires_at  TEXT
);
CREATE INDEX signing_keys_created_at ON signing_keys (created_at, kid);
