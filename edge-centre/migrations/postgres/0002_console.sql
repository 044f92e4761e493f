-- edge-centre schema version 2: the operators' console's accounts. No
-- secret is stored: passwords as argon2id PHC strings, session and API
-- tokens as the SHA-256 (hex) of the token the client holds.

CREATE TABLE users (
    name        TEXT    PRIMARY KEY,
    hash        TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at  BIGINT  NOT NULL
);

-- A login; its CSRF token is derived from the session token (never stored).
CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_name   TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Bearer tokens of the JSON API (scripts, other systems).
CREATE TABLE api_tokens (
    token_hash  TEXT    PRIMARY KEY,
    user_name   TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL
);

-- The console's filters and review queue.
CREATE INDEX alerts_district_time ON alerts (district, time DESC);
CREATE INDEX counts_time ON counts (node, camera, interval_start DESC);
