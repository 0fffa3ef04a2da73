-- What shell sessions displayed, as asciicast v2: the text is stored as
-- gzip members in order (recording_chunks), each a whole gzip stream, so a
-- session cut short still leaves a readable recording. size and sha256 are
-- of the uncompressed text, set when the recording ends.
CREATE TABLE recordings (
    session_id BIGINT PRIMARY KEY,
    request_id TEXT,
    computer TEXT NOT NULL,
    operator TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    duration_ms BIGINT,
    size BIGINT,
    stored BIGINT NOT NULL DEFAULT 0,
    sha256 TEXT
);
CREATE INDEX recordings_started ON recordings (started_at);
CREATE INDEX recordings_computer ON recordings (computer, started_at);
CREATE TABLE recording_chunks (
    session_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (session_id, seq)
);
