-- Disputes put their calls' recordings under a legal hold; grants give a
-- support user time-limited playback of one dispute's recordings, approved
-- by someone else when four-eyes is on.
CREATE TABLE disputes (
    id          TEXT PRIMARY KEY,
    ticket      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    opened_by   TEXT NOT NULL,         -- staff id
    opened_at   BIGINT NOT NULL,
    hold_id     TEXT,                  -- the legal hold (and its KEK id)
    resolved_by TEXT,
    resolved_at BIGINT
);
CREATE TABLE dispute_calls (
    dispute_id  TEXT NOT NULL REFERENCES disputes(id),
    call_id     TEXT NOT NULL REFERENCES calls(id),
    PRIMARY KEY (dispute_id, call_id)
);
CREATE TABLE grants (
    id           TEXT PRIMARY KEY,
    dispute_id   TEXT NOT NULL REFERENCES disputes(id),
    requested_by TEXT NOT NULL,        -- staff id
    requested_at BIGINT NOT NULL,
    approved_by  TEXT,
    approved_at  BIGINT,
    expires_at   BIGINT                -- set at approval
);
