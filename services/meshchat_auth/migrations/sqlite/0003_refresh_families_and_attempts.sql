-- A refresh family (one login) becomes a row of its own; see the PostgreSQL migration
-- 0002. On SQLite every write runs under BEGIN IMMEDIATE, which makes the rotation one step.
CREATE TABLE refresh_families (
    family_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);
-- A family is revoked when any of its tokens was (max ignores NULL).
INSERT INTO refresh_families (family_id, user_id, created_at, expires_at, revoked_at)
SELECT family_id, user_id, min(issued_at), max(expires_at), max(revoked_at)
FROM refresh_tokens GROUP BY family_id, user_id;
-- The successor, encrypted with a key derived from this token (the grace window).
ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed BLOB;
ALTER TABLE refresh_tokens DROP COLUMN expires_at;
ALTER TABLE refresh_tokens DROP COLUMN revoked_at;
-- Failed-login counters are kept per key (account and client address, address, account);
-- the old per-account rows are at most one window old and are dropped.
DELETE FROM login_failures;
ALTER TABLE login_failures RENAME COLUMN username_key TO attempt_key;
CREATE INDEX login_failures_window ON login_failures (window_start);
