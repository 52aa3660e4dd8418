-- Revocations are scoped by tenant (DESIGN §5, §9): a tenant admin's revocation of a jti
-- refuses only that tenant's token with the jti; '*' (a platform admin's) refuses it in every
-- tenant. The key becomes (tenant, jti), so one tenant recording a jti first can no longer
-- block another tenant's revocation of the same jti. SQLite cannot change a primary key in
-- place: the table is rebuilt. Rows written before scoping with no tenant stay effective
-- everywhere ('*').

-- +goose Up
CREATE TABLE revoked_tokens_scoped (
    tenant     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, jti)
) STRICT;
INSERT INTO revoked_tokens_scoped (tenant, jti, expires_at, revoked_at, revoked_by)
    SELECT CASE WHEN tenant = '' THEN '*' ELSE tenant END, jti, expires_at, revoked_at, revoked_by
    FROM revoked_tokens;
DROP TABLE revoked_tokens;
ALTER TABLE revoked_tokens_scoped RENAME TO revoked_tokens;
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);
CREATE INDEX revoked_tokens_revoked ON revoked_tokens (revoked_at);
CREATE INDEX revoked_tokens_jti ON revoked_tokens (jti);

-- +goose Down
CREATE TABLE revoked_tokens_unscoped (
    jti        TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL DEFAULT ''
) STRICT;
INSERT OR IGNORE INTO revoked_tokens_unscoped (jti, tenant, expires_at, revoked_at, revoked_by)
    SELECT jti, tenant, expires_at, revoked_at, revoked_by FROM revoked_tokens ORDER BY revoked_at;
DROP TABLE revoked_tokens;
ALTER TABLE revoked_tokens_unscoped RENAME TO revoked_tokens;
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);
CREATE INDEX revoked_tokens_revoked ON revoked_tokens (revoked_at);
