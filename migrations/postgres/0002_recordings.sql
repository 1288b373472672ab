-- Encrypted call recordings. The audio is in the blob store, encrypted
-- under a per-recording DEK; the DEK is stored here only wrapped by its
-- epoch KEK, which lives in the key store, never in the database.
CREATE TABLE recordings (
    id              TEXT PRIMARY KEY,      -- UUID, also in the CREC header
    call_id         TEXT NOT NULL REFERENCES calls(id),
    session_id      TEXT NOT NULL,
    retention_class TEXT NOT NULL,
    epoch_id        TEXT NOT NULL,         -- id of the KEK in the key store
    wrapped_dek     BYTEA NOT NULL,
    blob            TEXT NOT NULL,         -- name in the blob store
    codec           TEXT NOT NULL,         -- 'PCMU' | 'PCMA'
    state           TEXT NOT NULL,         -- 'recording' | 'complete' | 'truncated'
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    duration_ms     BIGINT,
    expires_at      BIGINT                 -- ended_at + the class's period
);
CREATE INDEX recordings_by_call ON recordings(call_id);
CREATE INDEX recordings_by_epoch ON recordings(epoch_id);

-- Access events (exports now; the support issue chains them by hash).
CREATE TABLE audit_events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    object  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
