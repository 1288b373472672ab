-- Idempotency-Key on POST (src/store/idempotency.rs): one row per
-- (staff member, route, key), claimed before the request runs (the
-- primary key makes the claim race-free across nodes), holding the first
-- response once it is known. Rows are purged when they expire (24 h).
CREATE TABLE idempotency_keys (
    staff_id TEXT NOT NULL,
    route TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- While the first request runs: until when its claim holds (a node
    -- that died leaves it to lapse). NULL once the response is stored.
    locked_until BIGINT,
    status BIGINT,
    location TEXT,
    content_type TEXT,
    body BLOB,
    PRIMARY KEY (staff_id, route, idem_key)
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
