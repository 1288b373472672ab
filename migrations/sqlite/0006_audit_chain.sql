-- The access log becomes tamper-evident: each event carries the hash of
-- the previous one and its own hash over both, so editing, deleting or
-- reordering any stored event breaks the chain from there on.
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
