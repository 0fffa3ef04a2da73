-- Which server key this database's links are made with, as a fingerprint
-- (never the key): a server started with another key would reject every
-- link already sent, and its own links would fail on the other replicas.
CREATE TABLE server_identity (
    id              BIGINT  PRIMARY KEY CHECK (id = 1),
    key_fingerprint TEXT    NOT NULL
);
