-- Identities are ids, not names: an operator or a computer removed and
-- added again under the same name is someone new and inherits nothing.
-- Grants and blocks belong to ids (and are deleted with their owner);
-- requests and recordings keep the names people read and also name their
-- owners' ids, which is what every check uses. Rows are given the id of the
-- principal of that name only if it existed when they were written: what
-- an earlier holder of the name left behind belongs to no one.

-- Ids are never handed out twice. Without AUTOINCREMENT SQLite gives a new
-- row the largest id plus one, which is a removed row's when it was the
-- largest; it cannot be added in place, so both tables are rebuilt.
CREATE TABLE operators_by_id (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    token_hash  BLOB    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    email       TEXT
);
INSERT INTO operators_by_id (id, name, token_hash, created_at, email)
    SELECT id, name, token_hash, created_at, email FROM operators;
DROP TABLE operators;
ALTER TABLE operators_by_id RENAME TO operators;

CREATE TABLE agents_by_id (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    key_hash    BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO agents_by_id (id, name, key_hash, created_at)
    SELECT id, name, key_hash, created_at FROM agents;
DROP TABLE agents;
ALTER TABLE agents_by_id RENAME TO agents;

-- What a removed operator or computer left is deleted below; the server
-- says so once.
INSERT INTO upgrade_notices (id, message)
    SELECT 'identities-leftovers',
           'identities: grants and blocks left by operators or computers removed before this upgrade were deleted, so that a name added again inherits nothing; check doorman admin access list'
    WHERE EXISTS (
        SELECT 1 FROM grants g WHERE NOT EXISTS (
            SELECT 1 FROM operators o WHERE o.name = g.operator AND o.created_at <= g.created_at))
    OR EXISTS (
        SELECT 1 FROM blocks b WHERE NOT EXISTS (
            SELECT 1 FROM operators o WHERE o.name = b.operator AND o.created_at <= b.created_at)
        OR NOT EXISTS (
            SELECT 1 FROM agents a WHERE a.name = b.computer AND a.created_at <= b.created_at));

-- An operator's grants, by its id.
CREATE TABLE grants_by_id (
    operator_id INTEGER NOT NULL,
    computers   TEXT    NOT NULL,
    services    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (operator_id, computers)
);
INSERT INTO grants_by_id (operator_id, computers, services, created_at)
    SELECT o.id, g.computers, g.services, g.created_at
    FROM grants g JOIN operators o ON o.name = g.operator AND o.created_at <= g.created_at;
DROP TABLE grants;
ALTER TABLE grants_by_id RENAME TO grants;

-- "I did not expect this": that operator may not ask that computer, by ids.
CREATE TABLE blocks_by_id (
    operator_id INTEGER NOT NULL,
    computer_id INTEGER NOT NULL,
    until       INTEGER NOT NULL,
    reported_by TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (operator_id, computer_id)
);
INSERT INTO blocks_by_id (operator_id, computer_id, until, reported_by, created_at)
    SELECT o.id, a.id, b.until, b.reported_by, b.created_at
    FROM blocks b
    JOIN operators o ON o.name = b.operator AND o.created_at <= b.created_at
    JOIN agents a ON a.name = b.computer AND a.created_at <= b.created_at;
DROP TABLE blocks;
ALTER TABLE blocks_by_id RENAME TO blocks;
CREATE INDEX blocks_computer ON blocks (computer_id);

-- Whose requests and recordings they are (NULL: of someone removed before
-- this upgrade, or of a name's earlier holder).
ALTER TABLE requests ADD COLUMN operator_id INTEGER;
ALTER TABLE requests ADD COLUMN computer_id INTEGER;
UPDATE requests SET
    operator_id = (SELECT o.id FROM operators o
                   WHERE o.name = requests.operator AND o.created_at <= requests.created_at),
    computer_id = (SELECT a.id FROM agents a
                   WHERE a.name = requests.computer AND a.created_at <= requests.created_at);
CREATE INDEX requests_operator_id ON requests (operator_id, created_at);
CREATE INDEX requests_computer_id ON requests (computer_id, state);

ALTER TABLE recordings ADD COLUMN operator_id BIGINT;
ALTER TABLE recordings ADD COLUMN computer_id BIGINT;
UPDATE recordings SET
    operator_id = (SELECT o.id FROM operators o
                   WHERE o.name = recordings.operator AND o.created_at <= recordings.started_at),
    computer_id = (SELECT a.id FROM agents a
                   WHERE a.name = recordings.computer AND a.created_at <= recordings.started_at);
CREATE INDEX recordings_operator_id ON recordings (operator_id, started_at);
