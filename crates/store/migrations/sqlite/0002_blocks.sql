-- "I did not expect this": a recipient's report blocks that operator from
-- asking that computer again until `until`.
CREATE TABLE blocks (
    operator    TEXT    NOT NULL,
    computer    TEXT    NOT NULL,
    until       INTEGER NOT NULL,
    reported_by TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (operator, computer)
);
