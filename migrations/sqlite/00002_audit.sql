-- Audit log (DESIGN §10). One hash chain per tenant: `chain` is the tenant id, '' for the
-- platform chain. `body` is the record's canonical JSON without its hash, byte for byte what
-- the hash covers (TEXT, never re-serialised); the other columns repeat fields of the body for
-- filtering and are checked against it by `flowgate audit verify`. Times are Unix milliseconds.

-- +goose Up
CREATE TABLE audit_records (
    chain     TEXT NOT NULL,
    seq       INTEGER NOT NULL CHECK (seq > 0),
    id        TEXT NOT NULL,
    time_ms   INTEGER NOT NULL,
    action    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    actor_sub TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX audit_records_time ON audit_records (time_ms, chain, seq);
CREATE INDEX audit_records_chain_time ON audit_records (chain, time_ms, seq);
CREATE INDEX audit_records_chain_action ON audit_records (chain, action, time_ms);
CREATE INDEX audit_records_chain_actor ON audit_records (chain, actor_sub, time_ms);

-- The head of every chain, locked by each append so that concurrent writers serialise per chain.
CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL CHECK (seq >= 0),
    hash  TEXT NOT NULL
) STRICT;

-- Ed25519-signed chain heads (kind 'checkpoint') and signed last-pruned records (kind 'anchor').
CREATE TABLE audit_checkpoints (
    chain     TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
    seq       INTEGER NOT NULL CHECK (seq > 0),
    hash      TEXT NOT NULL,
    time_ms   INTEGER NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (chain, kind, seq)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_heads;
DROP TABLE audit_records;
