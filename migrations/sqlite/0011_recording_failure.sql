-- Why a recording ended `failed` (`write-error`, `unsupported-codec`);
-- NULL for the other states.
ALTER TABLE recordings ADD COLUMN failure TEXT;
