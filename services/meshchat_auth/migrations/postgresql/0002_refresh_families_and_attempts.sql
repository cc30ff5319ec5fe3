-- A refresh family (one login) becomes a row of its own. Rotations and revocations of a
-- family lock that row, so using a token, checking that its family is not revoked and storing
-- its successor are one step that a concurrent revocation cannot interleave with.
CREATE TABLE refresh_families (
    family_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);
-- A family is revoked when any of its tokens was (max ignores NULL).
INSERT INTO refresh_families (family_id, user_id, created_at, expires_at, revoked_at)
SELECT family_id, user_id, min(issued_at), max(expires_at), max(revoked_at)
FROM refresh_tokens GROUP BY family_id, user_id;
-- successor_sealed is the successor token encrypted with a key derived from this token, for
-- the grace window in which a lost answer may be asked for again; no one without this
-- token can read it.
ALTER TABLE refresh_tokens
    ADD COLUMN successor_hash TEXT,
    ADD COLUMN successor_sealed BYTEA,
    DROP COLUMN expires_at,
    DROP COLUMN revoked_at,
    ADD CONSTRAINT refresh_tokens_family_fkey FOREIGN KEY (family_id)
        REFERENCES refresh_families (family_id) ON DELETE CASCADE;
-- Failed-login counters are kept per key (account and client address, address, account);
-- the old per-account rows are at most one window old and are dropped.
DELETE FROM login_failures;
ALTER TABLE login_failures RENAME COLUMN username_key TO attempt_key;
CREATE INDEX login_failures_window ON login_failures (window_start);
