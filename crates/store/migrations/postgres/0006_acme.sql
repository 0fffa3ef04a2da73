-- What `--acme-domain` obtained, shared by every replica of one database:
-- the account at each ACME directory, and the certificate for each set of
-- domains. Private keys are sealed with the server key (see
-- secrets::ServerKey::seal), never stored in clear.
CREATE TABLE acme_accounts (
    directory      TEXT    NOT NULL PRIMARY KEY,
    sealed_account TEXT    NOT NULL
);
CREATE TABLE acme_certificates (
    domains     TEXT    NOT NULL PRIMARY KEY,
    chain_pem   TEXT    NOT NULL,
    sealed_key  TEXT    NOT NULL,
    not_after   BIGINT  NOT NULL,
    issued_at   BIGINT  NOT NULL
);
