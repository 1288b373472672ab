-- What remains of an erased recording: ids and times, never a number, a
-- key or audio. The hash of the ciphertext lets an auditor match a blob
-- found in an old backup to its erasure.
CREATE TABLE tombstones (
    recording_id      TEXT PRIMARY KEY,
    call_id           TEXT NOT NULL,
    session_id        TEXT NOT NULL,
    retention_class   TEXT NOT NULL,
    epoch_id          TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    ended_at          BIGINT,
    expires_at        BIGINT,
    erased_at         BIGINT NOT NULL,
    reason            TEXT NOT NULL,      -- 'expired' | 'subject-request'
    ciphertext_sha256 TEXT                -- NULL if the blob was already gone
);
CREATE INDEX tombstones_by_call ON tombstones(call_id);
CREATE INDEX recordings_due ON recordings(expires_at);
