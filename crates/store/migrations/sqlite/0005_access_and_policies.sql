-- Access rules and approval policies.

-- An operator reaches the computers its grants match (a glob on names), for
-- the services listed (comma-separated: shell,command,forward).
CREATE TABLE grants (
    operator    TEXT    NOT NULL,
    computers   TEXT    NOT NULL,
    services    TEXT    NOT NULL,
    created_at  INTEGER  NOT NULL,
    PRIMARY KEY (operator, computers)
);

-- Operators that existed before access rules keep reaching everything.
INSERT INTO grants (operator, computers, services, created_at)
    SELECT name, '*', 'shell,command,forward', created_at FROM operators;

-- What the server logs once, at its next start, then deletes.
CREATE TABLE upgrade_notices (
    id       TEXT PRIMARY KEY,
    message  TEXT NOT NULL
);
INSERT INTO upgrade_notices (id, message)
    SELECT 'grants-for-existing-operators',
           'access rules: every operator that existed before this upgrade was granted every computer (*) and every service; narrow them with doorman admin access grant|revoke|list'
    WHERE EXISTS (SELECT 1 FROM operators);

-- An operator's own address never approves its requests.
ALTER TABLE operators ADD COLUMN email TEXT;

-- N distinct Allows settle a request; `approval_count` counts them and is the
-- version every conditional write checks.
ALTER TABLE requests ADD COLUMN required_approvals INTEGER NOT NULL DEFAULT 1;
ALTER TABLE requests ADD COLUMN approval_count INTEGER NOT NULL DEFAULT 0;
-- Why a cancelled request was cancelled (JSON of core's CancelCause).
ALTER TABLE requests ADD COLUMN cancel_cause TEXT;

CREATE TABLE approvals (
    request_id  TEXT    NOT NULL REFERENCES requests (id),
    address     TEXT    NOT NULL,
    at          INTEGER  NOT NULL,
    PRIMARY KEY (request_id, address)
);

-- approval_valid_for: an Allow also covers the same operator's further
-- sessions until `reusable_until`; a Deny on the computer or a revocation
-- clears it. A request let in that way names the approval it reused.
ALTER TABLE requests ADD COLUMN approval_valid_for INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN reusable_until INTEGER;
ALTER TABLE requests ADD COLUMN reused_from TEXT;
-- The computer's max_session_seconds when it was asked (0: no limit).
ALTER TABLE requests ADD COLUMN max_session_seconds INTEGER NOT NULL DEFAULT 0;

-- local_consent: whether a person at the computer answers too, and their
-- Allow once given (required mode).
ALTER TABLE requests ADD COLUMN local_consent TEXT NOT NULL DEFAULT 'off';
ALTER TABLE requests ADD COLUMN local_approved_by TEXT;
ALTER TABLE requests ADD COLUMN local_approved_at INTEGER;
