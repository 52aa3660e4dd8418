-- What each task's engine reported spending (DESIGN §14: task_complete.usage, returned by
-- status) and how many tools its permission mode refused. NULL usage: the engine reported none.

-- +goose Up
ALTER TABLE tasks ADD COLUMN usage_input_tokens INTEGER;
ALTER TABLE tasks ADD COLUMN usage_output_tokens INTEGER;
ALTER TABLE tasks ADD COLUMN usage_cache_read_tokens INTEGER;
ALTER TABLE tasks ADD COLUMN usage_cache_creation_tokens INTEGER;
ALTER TABLE tasks ADD COLUMN usage_cost_usd REAL;
ALTER TABLE tasks ADD COLUMN usage_num_turns INTEGER;
ALTER TABLE tasks ADD COLUMN permission_denials INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE tasks DROP COLUMN permission_denials;
ALTER TABLE tasks DROP COLUMN usage_num_turns;
ALTER TABLE tasks DROP COLUMN usage_cost_usd;
ALTER TABLE tasks DROP COLUMN usage_cache_creation_tokens;
ALTER TABLE tasks DROP COLUMN usage_cache_read_tokens;
ALTER TABLE tasks DROP COLUMN usage_output_tokens;
ALTER TABLE tasks DROP COLUMN usage_input_tokens;
