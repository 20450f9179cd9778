-- The sidecar reads every handle of a deduplication key, whatever its state (spec/arop.md OP-20:
-- the resolved ones number the next access request's Idempotency-Key). 0004's index is partial
-- (pending handles only) and cannot serve that query, which then scanned the table on every
-- decide. One full index serves both it and the pending-handle lookup of create_handle.
DROP INDEX continuation_handles_pending_dedup;
CREATE INDEX continuation_handles_dedup_key ON continuation_handles (dedup_key);
