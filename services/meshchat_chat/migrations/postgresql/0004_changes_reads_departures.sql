-- Edits and deletions are entries of a chat's numbering: a row of messages with kind
-- 'edited' or 'deleted', its own seq, the seq of the message it changed in target_seq, and
-- the actor as its sender. A message row keeps its seq and records its last edit and its
-- deletion (which empties its text).
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'message'
    CHECK (kind IN ('message', 'edited', 'deleted'));
ALTER TABLE messages ADD COLUMN target_seq BIGINT;
ALTER TABLE messages ADD COLUMN edited_at TIMESTAMPTZ;
ALTER TABLE messages ADD COLUMN deleted_at TIMESTAMPTZ;
-- Each member's read position: everything up to this seq has been read. It only grows.
ALTER TABLE chat_members ADD COLUMN read_seq BIGINT NOT NULL DEFAULT 0;
-- Why a user is no longer a member: kept until they are added again, so that they are told
-- "you were removed from general by alice" or "general was deleted by alice". No foreign key:
-- the record outlives a deleted chat.
CREATE TABLE departures (
    chat_id UUID NOT NULL,
    user_id TEXT NOT NULL,
    chat_name TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('removed', 'left', 'chat_deleted')),
    by_username TEXT NOT NULL,
    departed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
