-- Doorman's first schema. Never edit a migration once it has landed: add a new one.
-- Times are milliseconds since the Unix epoch. Secrets are stored only as SHA-256 hashes.

CREATE TABLE operators (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    token_hash  BLOB    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE agents (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    key_hash    BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE requests (
    id              TEXT    PRIMARY KEY,
    computer        TEXT    NOT NULL,
    operator        TEXT    NOT NULL,
    operator_ip     TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    state           TEXT    NOT NULL
        CHECK (state IN ('pending', 'allowed', 'denied', 'expired', 'cancelled')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    settled_at      INTEGER,
    decided_by      TEXT
);
CREATE INDEX requests_pending ON requests (state) WHERE state = 'pending';

CREATE TABLE recipients (
    request_id  TEXT    NOT NULL REFERENCES requests (id),
    position    INTEGER NOT NULL,
    address     TEXT    NOT NULL,
    token_hash  BLOB    NOT NULL UNIQUE,
    PRIMARY KEY (request_id, position)
);

-- The transactional outbox: one row per email, written with its request.
CREATE TABLE outbox (
    request_id      TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    state           TEXT    NOT NULL
        CHECK (state IN ('queued', 'sent', 'failed', 'dropped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    sent_at         INTEGER,
    PRIMARY KEY (request_id, position),
    FOREIGN KEY (request_id, position) REFERENCES recipients (request_id, position)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'queued';

-- One session per allowed request: the unique request_id is the guarantee.
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    request_id  TEXT    UNIQUE,
    computer    TEXT    NOT NULL,
    operator    TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER
);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    request_id  TEXT,
    computer    TEXT,
    actor       TEXT,
    address     TEXT,
    user_agent  TEXT,
    detail      TEXT
);
