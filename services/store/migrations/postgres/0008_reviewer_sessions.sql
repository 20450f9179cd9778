-- Reviewer web UI sessions (services/reviewer): a browser's sign-in, or the CSRF token of its
-- sign-in form before it. Same logical schema in both dialects. Keyed by the SHA-256 hex digest
-- of the cookie value: the value itself is never stored. Sign-out deletes the row; the worker
-- purges the rows that expired.

CREATE TABLE reviewer_sessions (
    session_digest TEXT        PRIMARY KEY,
    expires_at     TIMESTAMPTZ NOT NULL,
    document       JSON        NOT NULL
);
CREATE INDEX reviewer_sessions_expires_at ON reviewer_sessions (expires_at);
