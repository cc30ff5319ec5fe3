-- What the chat service follows of the auth service's account events: the tokens it refuses
-- (one row per user, the merge of the user's events) and the number of the last event
-- applied, written in the transaction that applies it.
CREATE TABLE revocations (
    user_id TEXT PRIMARY KEY,
    not_before TIMESTAMPTZ NOT NULL,
    kept_session_id TEXT NOT NULL DEFAULT '',
    deleted BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE account_event_position (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
CREATE INDEX chats_owner ON chats (owner_id);
