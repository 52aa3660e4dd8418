-- Tables are created unqualified, in the first schema of the connection's search_path.

-- +goose Up
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    limits     JSONB NOT NULL DEFAULT '{}',
    key_ref    TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

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
    created_at     TIMESTAMPTZ NOT NULL,
    started_at     TIMESTAMPTZ,
    ended_at       TIMESTAMPTZ,
    exit_code      INTEGER,
    result_summary TEXT NOT NULL DEFAULT '',
    error_msg      TEXT NOT NULL DEFAULT '',
    last_seq       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tasks_tenant_owner_created ON tasks (tenant, owner, created_at);
CREATE INDEX tasks_tenant_created ON tasks (tenant, created_at);
CREATE INDEX tasks_status ON tasks (status);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ NOT NULL,
    revoked_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);
CREATE INDEX revoked_tokens_revoked ON revoked_tokens (revoked_at);

CREATE TABLE local_secrets (
    tenant      TEXT PRIMARY KEY REFERENCES tenants (id),
    ciphertext  BYTEA NOT NULL,
    nonce       BYTEA NOT NULL,
    fingerprint TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE nodes;
DROP TABLE local_secrets;
DROP TABLE revoked_tokens;
DROP TABLE tasks;
DROP TABLE tenants;
