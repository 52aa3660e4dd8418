-- Task event log (DESIGN §17): every event frame of a task, byte for byte as sent to clients,
-- written behind the live stream in batches, so a finished task's events are served from here
-- and a task cut short by a restart keeps what it had sent. A row is a run of one task's
-- consecutive events (first_seq..last_seq), their frames packed as uvarint length + bytes
-- and compressed as one S2 (Snappy-format) block: a row per event cost about as much CPU per
-- event as the gateway's whole streaming path, a compressed row per run costs a fraction. No foreign key to tasks: every read reaches the events through
-- its task, whose tenant is checked there. Pruning finds tasks through the primary key (the
-- distinct task ids still holding events), so tasks needs no index on ended_at.

-- +goose Up
CREATE TABLE task_events (
    task_id   TEXT NOT NULL,
    first_seq BIGINT NOT NULL CHECK (first_seq > 0),
    last_seq  BIGINT NOT NULL CHECK (last_seq >= first_seq),
    frames    BYTEA NOT NULL,
    PRIMARY KEY (task_id, first_seq)
);

-- +goose Down
DROP TABLE task_events;
