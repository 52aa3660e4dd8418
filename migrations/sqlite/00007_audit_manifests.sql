-- Signed manifests of every audit chain and its checkpointed head (DESIGN §16): what lets
-- `audit verify` see a chain deleted whole, or cut back together with its checkpoints. Each
-- links to the one before (prev_hash); only the newest few are kept.

-- +goose Up
CREATE TABLE audit_manifests (
    seq       INTEGER PRIMARY KEY CHECK (seq > 0),
    time_ms   INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    body      TEXT NOT NULL,
    hash      TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE audit_manifests;
