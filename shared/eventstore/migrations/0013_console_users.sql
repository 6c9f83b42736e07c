-- Console users and their sessions (services/api/users.py, services/api/console/). Like
-- api_keys, these tables are the truth (UserCreated/UserDeleted in the business's stream
-- record who did what, never an email or a password). Passwords are kept as scrypt hashes;
-- sessions by the SHA-256 of their cookie, so a copy of this table signs no one in.
CREATE TABLE IF NOT EXISTS api_users (
    user_id       text        PRIMARY KEY,
    business_id   text        NOT NULL,
    email         text        NOT NULL,     -- lower case: sign-in emails are unique
    name          text        NOT NULL DEFAULT '',
    role          text        NOT NULL,     -- admin, agent, viewer
    password_hash text        NOT NULL,     -- scrypt$n$r$p$salt$hash
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS api_users_email ON api_users (email);
CREATE INDEX IF NOT EXISTS api_users_by_business ON api_users (business_id, created_at DESC);

CREATE TABLE IF NOT EXISTS api_sessions (
    session_hash text        PRIMARY KEY,  -- hex SHA-256 of the cookie's value
    user_id      text        NOT NULL REFERENCES api_users (user_id) ON DELETE CASCADE,
    csrf_token   text        NOT NULL,     -- sent back in X-CSRF-Token by the console's writes
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS api_sessions_by_user ON api_sessions (user_id);
