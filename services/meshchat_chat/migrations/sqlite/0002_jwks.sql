-- The auth service's key set as last fetched (its JSON), so that a replica started
-- while the auth service is down still verifies the tokens of keys it has seen.
CREATE TABLE jwks (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    keys TEXT NOT NULL,
    -- Microseconds since the epoch, UTC.
    fetched_at INTEGER NOT NULL
);
