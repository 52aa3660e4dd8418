-- Every audit record is written once and read rarely: each secondary index is one more B-tree
-- insert on the hot path of every handshake, swarm and refusal. Keep the two that serve the
-- review filters of a tenant's chain (by time, by actor); an action filter scans the chain's
-- time index, and platform-wide queries (every chain by time) are rare reviews that may scan.

-- +goose Up
DROP INDEX audit_records_time;
DROP INDEX audit_records_chain_action;

-- +goose Down
CREATE INDEX audit_records_time ON audit_records (time_ms, chain, seq);
CREATE INDEX audit_records_chain_action ON audit_records (chain, action, time_ms);
