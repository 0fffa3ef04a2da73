-- Identities are ids, not names: the same as ../sqlite/0010_identities.sql.
-- An operator or a computer removed and added again under the same name is
-- someone new and inherits nothing. Grants and blocks belong to ids (and
-- are deleted with their owner); requests and recordings keep the names
-- people read and also name their owners' ids, which is what every check
-- uses. Rows are given the id of the principal of that name only if it
-- existed when they were written: what an earlier holder of the name left
-- behind belongs to no one. (Identity columns never hand out an id twice,
-- so operators and agents stay as they are.)

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
ALTER TABLE grants ADD COLUMN operator_id BIGINT;
UPDATE grants g SET operator_id = o.id
    FROM operators o WHERE o.name = g.operator AND o.created_at <= g.created_at;
DELETE FROM grants WHERE operator_id IS NULL;
ALTER TABLE grants DROP CONSTRAINT grants_pkey;
ALTER TABLE grants DROP COLUMN operator;
ALTER TABLE grants ALTER COLUMN operator_id SET NOT NULL;
ALTER TABLE grants ADD PRIMARY KEY (operator_id, computers);

-- "I did not expect this": that operator may not ask that computer, by ids.
ALTER TABLE blocks ADD COLUMN operator_id BIGINT;
ALTER TABLE blocks ADD COLUMN computer_id BIGINT;
UPDATE blocks b SET operator_id = o.id, computer_id = a.id
    FROM operators o, agents a
    WHERE o.name = b.operator AND o.created_at <= b.created_at
      AND a.name = b.computer AND a.created_at <= b.created_at;
DELETE FROM blocks WHERE operator_id IS NULL OR computer_id IS NULL;
ALTER TABLE blocks DROP CONSTRAINT blocks_pkey;
ALTER TABLE blocks DROP COLUMN operator;
ALTER TABLE blocks DROP COLUMN computer;
ALTER TABLE blocks ALTER COLUMN operator_id SET NOT NULL;
ALTER TABLE blocks ALTER COLUMN computer_id SET NOT NULL;
ALTER TABLE blocks ADD PRIMARY KEY (operator_id, computer_id);
CREATE INDEX blocks_computer ON blocks (computer_id);

-- Whose requests and recordings they are (NULL: of someone removed before
-- this upgrade, or of a name's earlier holder).
ALTER TABLE requests ADD COLUMN operator_id BIGINT;
ALTER TABLE requests ADD COLUMN computer_id BIGINT;
UPDATE requests r SET operator_id = o.id
    FROM operators o WHERE o.name = r.operator AND o.created_at <= r.created_at;
UPDATE requests r SET computer_id = a.id
    FROM agents a WHERE a.name = r.computer AND a.created_at <= r.created_at;
CREATE INDEX requests_operator_id ON requests (operator_id, created_at);
CREATE INDEX requests_computer_id ON requests (computer_id, state);

ALTER TABLE recordings ADD COLUMN operator_id BIGINT;
ALTER TABLE recordings ADD COLUMN computer_id BIGINT;
UPDATE recordings r SET operator_id = o.id
    FROM operators o WHERE o.name = r.operator AND o.created_at <= r.started_at;
UPDATE recordings r SET computer_id = a.id
    FROM agents a WHERE a.name = r.computer AND a.created_at <= r.started_at;
CREATE INDEX recordings_operator_id ON recordings (operator_id, started_at);
