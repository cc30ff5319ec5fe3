-- What other services must follow (AccountEventService.Watch): one row per account event,
-- written in the transaction of the change it records. No foreign key: a deleted account's
-- events outlive it. Writers take an advisory lock before their insert (see the store), so
-- that events commit in the order of their sequence numbers and a reader that has seen one
-- has seen every earlier one.
CREATE TABLE account_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id UUID NOT NULL,
    kind SMALLINT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    kept_session_id TEXT NOT NULL DEFAULT ''
);
