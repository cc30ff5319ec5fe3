-- Timestamps become whole microseconds since the epoch (UTC), as in the chat service's
-- database; 0001 kept them as ISO 8601 text ('2026-12-01T09:26:03.123456+00:00', the
-- fraction left out when it is zero). SQLite cannot change a column's type, so each table
-- is rebuilt with its rows converted, then renamed into place.
--
-- iso_micros converts every distinct value once. strftime('%s') reads the date, the time and
-- the UTC offset but rounds a fraction to milliseconds, so the fraction is cut out before
-- and added back as the six digits that Python writes.
CREATE TEMP TABLE iso_micros AS
SELECT iso, CAST(strftime('%s', substr(iso, 1, 19)
        || substr(iso, CASE WHEN substr(iso, 20, 1) = '.' THEN 27 ELSE 20 END)) AS INTEGER)
        * 1000000
    + CASE WHEN substr(iso, 20, 1) = '.' THEN CAST(substr(iso, 21, 6) AS INTEGER) ELSE 0 END
    AS micros
FROM (
    SELECT created_at AS iso FROM users
    UNION SELECT updated_at FROM users
    UNION SELECT issued_at FROM refresh_tokens
    UNION SELECT expires_at FROM refresh_tokens
    UNION SELECT used_at FROM refresh_tokens WHERE used_at IS NOT NULL
    UNION SELECT revoked_at FROM refresh_tokens WHERE revoked_at IS NOT NULL
    UNION SELECT window_start FROM login_failures
);
CREATE TABLE users_new (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    role INTEGER NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO users_new (id, username, email, role, password_hash, created_at, updated_at)
SELECT id, username, email, role, password_hash,
    (SELECT micros FROM iso_micros WHERE iso = created_at),
    (SELECT micros FROM iso_micros WHERE iso = updated_at)
FROM users;
-- The tokens' new table refers to users_new, and the old one is dropped before the old
-- users: dropping a table deletes its rows first, and with foreign keys on, deleting the old
-- users would cascade to every token that still refers to them.
CREATE TABLE refresh_tokens_new (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users_new (id) ON DELETE CASCADE,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    revoked_at INTEGER
);
INSERT INTO refresh_tokens_new
    (token_hash, family_id, user_id, issued_at, expires_at, used_at, revoked_at)
SELECT token_hash, family_id, user_id,
    (SELECT micros FROM iso_micros WHERE iso = issued_at),
    (SELECT micros FROM iso_micros WHERE iso = expires_at),
    (SELECT micros FROM iso_micros WHERE iso = used_at),
    (SELECT micros FROM iso_micros WHERE iso = revoked_at)
FROM refresh_tokens;
DROP TABLE refresh_tokens;
DROP TABLE users;
-- Renaming a table also renames it in the foreign keys that refer to it.
ALTER TABLE users_new RENAME TO users;
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE email <> '';
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE TABLE login_failures_new (
    username_key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
INSERT INTO login_failures_new (username_key, window_start, failures)
SELECT username_key, (SELECT micros FROM iso_micros WHERE iso = window_start), failures
FROM login_failures;
DROP TABLE login_failures;
ALTER TABLE login_failures_new RENAME TO login_failures;
DROP TABLE iso_micros;
