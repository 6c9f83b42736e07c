-- Failed console sign-ins (services/api/console/failures.py), shared by every api instance,
-- so that the limit holds however many run. Keyed by a keyed pseudonym of "ip:<address>"
-- or "email:<email>" (a SHA-256 without MASTER_KEY), never the address or email itself;
-- an attempt is a row from before its password is checked (so parallel guesses count),
-- removed if it succeeds; rows older than the window go.
CREATE TABLE IF NOT EXISTS console_sign_in_failures (
    id        bigserial   PRIMARY KEY,
    key_hash  text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS console_sign_in_failures_by_key
    ON console_sign_in_failures (key_hash, failed_at);
