-- Legal holds: a dispute keeps its recordings past their retention. A held
-- recording's DEK is wrapped by the hold's KEK (recordings.epoch_id names
-- it), so its epoch KEK can be destroyed on time regardless.
ALTER TABLE recordings ADD COLUMN held_by TEXT;
CREATE TABLE holds (
    id          TEXT PRIMARY KEY,      -- also the id of the hold KEK
    reference   TEXT NOT NULL,         -- the dispute (ticket) it serves
    created_at  BIGINT NOT NULL,
    released_at BIGINT
);
CREATE TABLE held_recordings (
    hold_id      TEXT NOT NULL REFERENCES holds(id),
    recording_id TEXT NOT NULL,
    PRIMARY KEY (hold_id, recording_id)
);
