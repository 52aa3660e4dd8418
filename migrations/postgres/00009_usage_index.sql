-- The usage ledger (DESIGN §18) is the tasks table's usage columns, summed per tenant over the
-- tasks that ended in a time range: this index serves those sums (GET /v1/admin/usage,
-- flowgate usage) and, later, a tenant's spend of the day.

-- +goose Up
CREATE INDEX tasks_tenant_ended ON tasks (tenant, ended_at);

-- +goose Down
DROP INDEX tasks_tenant_ended;
