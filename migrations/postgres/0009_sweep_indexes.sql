-- What the retention sweep reads, indexed (it ran full scans before):
-- the due recordings, oldest first, a page at a time (a partial index on
-- exactly the rows the query wants, in its order: expires_at, then id as
-- the page cursor's tie-break); whether a blob is still named by a row
-- (the leftover-blob check, once per blob); and the recordings a hold
-- keeps (placing and releasing holds).
DROP INDEX recordings_due;
CREATE INDEX recordings_due ON recordings (expires_at, id)
    WHERE held_by IS NULL AND state IN ('complete', 'truncated');
CREATE INDEX recordings_by_blob ON recordings (blob);
CREATE INDEX recordings_held ON recordings (held_by) WHERE held_by IS NOT NULL;
