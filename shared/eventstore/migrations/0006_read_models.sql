-- The api's read models (services/api/projections/): conversations, messages and contacts,
-- each written by its subscription in the same transaction as its checkpoint, and dropped
-- and rebuilt from the event store by `python -m ops rebuild-read-models`. Beside them, the
-- api's own bookkeeping: idempotency answers and daily send counts.

-- A business may cap the messages it sends through the API per UTC day (NULL: no cap).
ALTER TABLE directory_businesses ADD COLUMN IF NOT EXISTS daily_send_quota integer;

CREATE TABLE IF NOT EXISTS api_contacts (
    contact_id        text        PRIMARY KEY,  -- derived from (business_id, customer)
    business_id       text        NOT NULL,
    customer          text        NOT NULL,     -- the key: the first id Meta gave them
    wa_id             text,
    user_id           text,
    name              text        NOT NULL DEFAULT '',
    tags              text[]      NOT NULL DEFAULT '{}',
    attributes        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    marketing_opt_out boolean     NOT NULL DEFAULT false,
    first_seen_at     timestamptz NOT NULL,
    last_seen_at      timestamptz NOT NULL,
    sort_position     bigint      NOT NULL,     -- newest first: the event that made it
    UNIQUE (business_id, customer)
);
CREATE INDEX IF NOT EXISTS api_contacts_by_business
    ON api_contacts (business_id, sort_position DESC);
CREATE INDEX IF NOT EXISTS api_contacts_by_tag ON api_contacts USING gin (tags);

-- Every id a customer is known by in a business (wa_id, user_id, the key): one person, one
-- contact, whichever id a message or a send names.
CREATE TABLE IF NOT EXISTS api_contact_ids (
    business_id text NOT NULL,
    id          text NOT NULL,
    contact_id  text NOT NULL,
    PRIMARY KEY (business_id, id)
);

CREATE TABLE IF NOT EXISTS api_conversations (
    conversation_id      text        PRIMARY KEY,  -- <phone_number_id>.<customer key>
    business_id          text        NOT NULL,
    phone_number_id      text        NOT NULL,
    customer             text        NOT NULL,
    contact_id           text        NOT NULL,
    last_message_at      timestamptz,
    last_message_preview text        NOT NULL DEFAULT '',
    last_message_id      text,
    last_inbound_at      timestamptz,             -- Meta's timestamp of the last inbound
    state                text        NOT NULL DEFAULT 'bot',
    assignee             text,
    unread               integer     NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL
);
-- Newest first: by the last message, or when it was opened for one that has none yet.
CREATE INDEX IF NOT EXISTS api_conversations_by_business
    ON api_conversations (business_id, (COALESCE(last_message_at, created_at)) DESC,
                          conversation_id DESC);

CREATE TABLE IF NOT EXISTS api_messages (
    message_id      text        PRIMARY KEY,  -- wamid (inbound), command or message id
    business_id     text        NOT NULL,
    conversation_id text        NOT NULL,
    direction       text        NOT NULL,     -- inbound, outbound
    author          text        NOT NULL,     -- customer, bot, business, agent
    type            text        NOT NULL,
    text            text        NOT NULL DEFAULT '',
    media           jsonb,
    status          text,                     -- outbound only
    wamid           text,
    error           jsonb,
    via_api         boolean     NOT NULL DEFAULT false,
    sort_position   bigint      NOT NULL,     -- the conversation's order
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS api_messages_by_conversation
    ON api_messages (conversation_id, sort_position);
CREATE INDEX IF NOT EXISTS api_messages_by_wamid ON api_messages (wamid) WHERE wamid IS NOT NULL;

-- The first answer of every create made with an Idempotency-Key, per caller.
CREATE TABLE IF NOT EXISTS api_idempotency (
    principal    text        NOT NULL,  -- platform, or the API key's id
    key          text        NOT NULL,
    request_hash text        NOT NULL,  -- method, path and body
    status       integer     NOT NULL,
    body         bytea       NOT NULL,  -- the answer (sealed when it holds a secret)
    sealed       boolean     NOT NULL DEFAULT false,
    -- The write's place in the log: a replay waits for the read models to pass it too.
    transaction_id  bigint,
    global_position bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

CREATE TABLE IF NOT EXISTS api_send_counts (
    business_id text    NOT NULL,
    day         date    NOT NULL,
    sent        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (business_id, day)
);
