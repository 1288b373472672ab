-- A hold's release is two steps apart in time: the dispute is resolved (in
-- the database, with its audit event), then the hold's recordings leave it
-- and its KEK is destroyed (in the key store). release_requested_at marks
-- the first step, released_at the second; a hold between the two is
-- finished by the next resolve of its dispute or by the retention sweep.
ALTER TABLE holds ADD COLUMN release_requested_at BIGINT;

-- Holds left behind before this migration: unreleased, and no open dispute
-- keeps them. Either their dispute was resolved and the release failed, or
-- no dispute was ever written (POST /v1/disputes failed after placing the
-- hold). Both are to be released; the sweep will do it.
UPDATE holds SET release_requested_at = COALESCE(
        (SELECT MIN(d.resolved_at) FROM disputes d WHERE d.hold_id = holds.id),
        created_at)
    WHERE released_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM disputes d
                      WHERE d.hold_id = holds.id AND d.resolved_at IS NULL);
