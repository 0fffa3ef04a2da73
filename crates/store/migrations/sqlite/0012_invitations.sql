-- Invitations for computers to join (`doorman admin agent invite`,
-- `doorman agent join`): the name the computer is added under, the SHA-256
-- of its single-use code (never the code), when it stops working, and when
-- and from which address it was used (NULL until then).
CREATE TABLE invitations (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    code_hash   BLOB    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    used_from   TEXT
);

-- What the line `doorman admin agent invite` prints names besides the
-- code, as the server last started with it: its public URL, and the
-- SHA-256 (hex) of the private CA it presents, if any.
ALTER TABLE server_identity ADD COLUMN public_url TEXT;
ALTER TABLE server_identity ADD COLUMN ca_sha256 TEXT;
