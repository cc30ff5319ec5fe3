CREATE TABLE chats (
    -- Timestamps are microseconds since the epoch, UTC.
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- The per-chat message counter: the seq of the newest message.
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX chats_created ON chats (created_at, id);
CREATE TABLE chat_members (
    chat_id TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user ON chat_members (user_id, chat_id);
CREATE TABLE messages (
    chat_id TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    sender_username TEXT NOT NULL,
    text TEXT NOT NULL,
    client_message_id TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (chat_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (chat_id, sender_id, client_message_id)
    WHERE client_message_id <> ''
