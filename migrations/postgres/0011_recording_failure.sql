-- Why a recording ended `failed` (`write-error`, `unsupported-codec`);
-- NULL for the other states.
ALTER TABLE recordings ADD COLUMN failure TEXT;

-- Failed recordings are erased when due like the others: the due index
-- (0009) covers them too.
DROP INDEX recordings_due;
CREATE INDEX recordings_due ON recordings (expires_at, id)
    WHERE held_by IS NULL AND state IN ('complete', 'truncated', 'failed');
