-- Entities of the policy information point. Deleted entities stay as tombstones (deleted = true)
-- so that instances syncing incrementally learn about the deletion.
CREATE TABLE entities (
    type       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    properties JSONB   NOT NULL,
    parents    JSONB   NOT NULL,
    revision   BIGINT  NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (type, id)
);
CREATE INDEX entities_revision ON entities (revision);

-- One row: every entity write increments it first, so writers serialise on this row and
-- revisions follow commit order (a sequence would hand out numbers out of commit order).
CREATE TABLE entity_revision (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    value     BIGINT  NOT NULL
);
INSERT INTO entity_revision (singleton, value) VALUES (TRUE, 0);

CREATE TABLE secrets (
    name       TEXT        PRIMARY KEY,
    value      BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE signing_keys (
    kid         TEXT        PRIMARY KEY,
    alg         TEXT        NOT NULL,
    private_jwk TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    retires_at  TIMESTAMPTZ
);
CREATE INDEX signing_keys_created_at ON signing_keys (created_at, kid);
