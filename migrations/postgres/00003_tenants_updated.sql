-- Servers poll for tenants changed since their last look (a suspension, a key set or deleted
-- by `flowgate tenant|key` or another replica), ordered by (updated_at, id).

-- +goose Up
CREATE INDEX tenants_updated ON tenants (updated_at, id);

-- +goose Down
DROP INDEX tenants_updated;
