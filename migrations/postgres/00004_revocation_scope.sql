-- Revocations are scoped by tenant (DESIGN §5, §9): a tenant admin's revocation of a jti
-- refuses only that tenant's token with the jti; '*' (a platform admin's) refuses it in every
-- tenant. The key becomes (tenant, jti), so one tenant recording a jti first can no longer
-- block another tenant's revocation of the same jti. Rows written before scoping with no
-- tenant stay effective everywhere ('*').

-- +goose Up
ALTER TABLE revoked_tokens DROP CONSTRAINT revoked_tokens_pkey;
UPDATE revoked_tokens SET tenant = '*' WHERE tenant = '';
ALTER TABLE revoked_tokens ADD PRIMARY KEY (tenant, jti);
CREATE INDEX revoked_tokens_jti ON revoked_tokens (jti);

-- +goose Down
DROP INDEX revoked_tokens_jti;
ALTER TABLE revoked_tokens DROP CONSTRAINT revoked_tokens_pkey;
DELETE FROM revoked_tokens a USING revoked_tokens b
    WHERE a.jti = b.jti AND (a.revoked_at, a.tenant) > (b.revoked_at, b.tenant);
ALTER TABLE revoked_tokens ADD PRIMARY KEY (jti);
