-- The directory of businesses, numbers and API keys: the api's own projection of the
-- business-<id> streams, written in the same transaction as their events; and the secrets,
-- sealed (AES-256-GCM under a key derived from MASTER_KEY), never in any event.

CREATE TABLE IF NOT EXISTS directory_businesses (
    business_id     text        PRIMARY KEY,
    name            text        NOT NULL,
    messaging_limit integer,               -- NULL: unlimited
    is_default      boolean     NOT NULL DEFAULT false,
    version         bigint      NOT NULL,  -- the business stream's version
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
-- At most one default business (the one `make up` makes from the environment).
CREATE UNIQUE INDEX IF NOT EXISTS directory_one_default
    ON directory_businesses (is_default) WHERE is_default;

CREATE TABLE IF NOT EXISTS directory_numbers (
    phone_number_id      text        PRIMARY KEY,  -- one business per number, ever
    business_id          text        NOT NULL REFERENCES directory_businesses,
    waba_id              text        NOT NULL,
    display_phone_number text        NOT NULL DEFAULT '',
    send_rate_per_second double precision NOT NULL DEFAULT 80,
    persona              text        NOT NULL DEFAULT '',
    llm_model            text        NOT NULL DEFAULT '',
    voice_id             text        NOT NULL DEFAULT '',
    own_app              boolean     NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS directory_numbers_by_business ON directory_numbers (business_id);

-- One WABA, one business (a business may have several WABAs).
CREATE TABLE IF NOT EXISTS directory_wabas (
    waba_id     text PRIMARY KEY,
    business_id text NOT NULL REFERENCES directory_businesses
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_id      text        PRIMARY KEY,
    business_id text        NOT NULL REFERENCES directory_businesses,
    name        text        NOT NULL,
    role        text        NOT NULL,
    key_hash    text        NOT NULL UNIQUE,  -- hex SHA-256 of the key
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE TABLE IF NOT EXISTS secrets (
    owner      text        NOT NULL,  -- e.g. number:<phone_number_id>
    name       text        NOT NULL,  -- access_token, app_secret, verify_token, ...
    sealed     bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, name)
);
