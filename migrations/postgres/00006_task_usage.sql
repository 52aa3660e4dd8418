-- What each task's engine reported spending (DESIGN §14: task_complete.usage, returned by
-- status) and how many tools its permission mode refused. NULL usage: the engine reported none.

-- +goose Up
ALTER TABLE tasks
    ADD COLUMN usage_input_tokens BIGINT,
    ADD COLUMN usage_output_tokens BIGINT,
    ADD COLUMN usage_cache_read_tokens BIGINT,
    ADD COLUMN usage_cache_creation_tokens BIGINT,
    ADD COLUMN usage_cost_usd DOUBLE PRECISION,
    ADD COLUMN usage_num_turns INTEGER,
    ADD COLUMN permission_denials INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE tasks
    DROP COLUMN permission_denials,
    DROP COLUMN usage_num_turns,
    DROP COLUMN usage_cost_usd,
    DROP COLUMN usage_cache_creation_tokens,
    DROP COLUMN usage_cache_read_tokens,
    DROP COLUMN usage_output_tokens,
    DROP COLUMN usage_input_tokens;
