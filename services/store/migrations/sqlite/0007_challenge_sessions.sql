-- Client Challenge sessions (oauth-transports.md §5, TX-51, TX-52, TX-58, TX-61): a challenge the
-- sidecar issued and the client has yet to answer. Same logical schema as
-- postgres/0007_challenge_sessions.sql. Keyed by the SHA-256 hex digest of the session value: the
-- value itself is never stored (like a handle, OP-27). A session is answered once: the follow-up
-- takes (deletes) its row; the worker purges the rows that expired unanswered. Timestamps as in
-- 0001.

CREATE TABLE challenge_sessions (
    session_digest TEXT PRIMARY KEY,
    expires_at     TEXT NOT NULL,
    document       TEXT NOT NULL
);
CREATE INDEX challenge_sessions_expires_at ON challenge_sessions (expires_at);
