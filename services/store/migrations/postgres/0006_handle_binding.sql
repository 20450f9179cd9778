-- The CIBA notification sweep (services/oauth/service.py notify_due) runs every worker round and
-- needs only the pending CIBA handles; without a column it read and decoded every pending handle
-- of every binding. The binding never changes after creation.
ALTER TABLE continuation_handles ADD COLUMN binding TEXT NOT NULL DEFAULT '';
UPDATE continuation_handles SET binding = document->>'binding';
CREATE INDEX continuation_handles_pending_binding ON continuation_handles (binding, handle_digest)
    WHERE state = 'pending';
