-- Times are TEXT in one fixed-width UTC format ("2006-01-02T15:04:05.000000Z", see
-- store.DB.TimeArg) so that they compare and sort correctly as strings.

-- +goose Up
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    limits     TEXT NOT NULL DEFAULT '{}',
    key_ref    TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE tasks (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL REFERENCES tenants (id),
    owner          TEXT NOT NULL,
    objective      TEXT NOT NULL,
    agents         INTEGER NOT NULL,
    strategy       TEXT NOT NULL,
    mode           TEXT NOT NULL,
    timeout_sec    INTEGER NOT NULL,
    status         TEXT NOT NULL,
    node           TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    ended_at       TEXT,
    exit_code      INTEGER,
    result_summary TEXT NOT NULL DEFAULT '',
    error_msg      TEXT NOT NULL DEFAULT '',
    last_seq       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX tasks_tenant_owner_created ON tasks (tenant, owner, created_at);
CREATE INDEX tasks_tenant_created ON tasks (tenant, created_at);
CREATE INDEX tasks_status ON tasks (status);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);
CREATE INDEX revoked_tokens_revoked ON revoked_tokens (revoked_at);

CREATE TABLE local_secrets (
    tenant      TEXT PRIMARY KEY REFERENCES tenants (id),
    ciphertext  BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE nodes;
DROP TABLE local_secrets;
DROP TABLE revoked_tokens;
DROP TABLE tasks;
DROP TABLE tenants;
