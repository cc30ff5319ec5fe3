-- What other services must follow (AccountEventService.Watch): one row per account event,
-- written in the transaction of the change it records. No foreign key: a deleted account's
-- events outlive it. AUTOINCREMENT never reuses a sequence number.
CREATE TABLE account_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    kept_session_id TEXT NOT NULL DEFAULT ''
);
