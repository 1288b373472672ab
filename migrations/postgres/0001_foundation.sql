-- Foundation schema: the safe-number pool, sessions and their bindings,
-- staff tokens, call records. Times are Unix milliseconds (BIGINT) and ids
-- are text, because sqlx's Any driver has no portable time or UUID type.

CREATE TABLE numbers (
    number      TEXT PRIMARY KEY,          -- E.164 safe number
    added_at    BIGINT NOT NULL
);

-- Serialises session assignment per participant without storing who the
-- participant is: a participant's slot is a hash of its number modulo 4096.
CREATE TABLE assignment_locks (
    slot        BIGINT PRIMARY KEY,
    version     BIGINT NOT NULL
);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    a_number        TEXT NOT NULL,
    a_proxy         TEXT NOT NULL REFERENCES numbers(number),
    b_number        TEXT NOT NULL,
    b_proxy         TEXT NOT NULL REFERENCES numbers(number),
    retention_class TEXT NOT NULL,
    record          BIGINT NOT NULL,       -- 1 = record calls, 0 = do not (sqlx Any has no SQLite bool)
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    closed_at       BIGINT,
    close_reason    TEXT                   -- 'closed' | 'expired'
);
CREATE INDEX sessions_open_expiry ON sessions(expires_at) WHERE closed_at IS NULL;

-- One row per participant per session: the routing key is
-- (participant, proxy_number). While a binding is active (released_at IS
-- NULL) nobody else may hold the same pair: the unique index enforces it.
-- Released rows are the quarantine history.
CREATE TABLE bindings (
    session_id      TEXT NOT NULL REFERENCES sessions(id),
    side            TEXT NOT NULL CHECK (side IN ('a', 'b')),
    participant     TEXT NOT NULL,
    proxy_number    TEXT NOT NULL REFERENCES numbers(number),
    counterpart     TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    released_at     BIGINT,
    PRIMARY KEY (session_id, side)
);
CREATE UNIQUE INDEX bindings_active_key ON bindings(participant, proxy_number)
    WHERE released_at IS NULL;
CREATE INDEX bindings_active_number ON bindings(proxy_number) WHERE released_at IS NULL;
CREATE INDEX bindings_participant_history ON bindings(participant, released_at);

CREATE TABLE staff (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the bearer token
    created_at  BIGINT NOT NULL,
    disabled_at BIGINT
);

-- Call records (filled by the SIP layer).
CREATE TABLE calls (
    id              TEXT PRIMARY KEY,
    session_id      TEXT REFERENCES sessions(id),
    direction       TEXT NOT NULL,         -- 'a_to_b' | 'b_to_a' | 'unrouted'
    caller          TEXT NOT NULL,         -- real number of the caller
    dialled         TEXT NOT NULL,         -- the proxy number dialled
    invite_at       BIGINT NOT NULL,
    ring_at         BIGINT,
    answer_at       BIGINT,
    end_at          BIGINT,
    result          TEXT,                  -- 'answered' | 'busy' | 'no_answer' | 'cancelled' | 'rejected' | 'failed' | 'interrupted'
    sip_status      BIGINT,
    hangup_side     TEXT,                  -- 'caller' | 'callee' | 'system'
    recording_id    TEXT
);
CREATE INDEX calls_by_session ON calls(session_id, invite_at);
