-- Binding-token `jti`s the Access Request Service accepted (ARAP AR-26 step 3), remembered until
-- the token expires so that a replayed token is refused. Same logical schema as
-- sqlite/0003_token_ids.sql. `intent` names the submission that presented the token (a hash of
-- caller, Idempotency-Key and body fingerprint, ARAP §8.6): the same intent presenting it again
-- is a retry, not a replay. NULL (no Idempotency-Key) makes any second presentation a replay.

CREATE TABLE token_ids (
    jti        TEXT        PRIMARY KEY,
    intent     TEXT,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX token_ids_expires_at ON token_ids (expires_at);
