-- The api's analytics read model (services/api/projections/analytics.py, subscription
-- `api.analytics`): what the conversations read model does not keep, for
-- `GET /v1/analytics`. Rebuilt with the others by `python -m ops rebuild-read-models`;
-- an erasure deletes a conversation's rows (they name it, and so the customer's number).

-- Each conversation as the analytics need it: who has it, and since when a customer's
-- message waits for an answer (NULL: nothing waits).
CREATE TABLE IF NOT EXISTS api_analytics_conversations (
    conversation_id text        PRIMARY KEY,
    business_id     text        NOT NULL,
    phone_number_id text        NOT NULL,
    state           text        NOT NULL DEFAULT 'bot',  -- bot, waiting, agent, closed
    waiting_since   timestamptz
);

-- Every first response: from the customer's message (or the handoff) that waited, to the
-- first reply of the bot or of a person after it.
CREATE TABLE IF NOT EXISTS api_analytics_responses (
    position        bigint      PRIMARY KEY,  -- the reply's global position
    business_id     text        NOT NULL,
    phone_number_id text        NOT NULL,
    conversation_id text        NOT NULL,
    responder       text        NOT NULL,     -- bot or agent
    reply_id        text        NOT NULL,     -- the reply's command or message id
    asked_at        timestamptz NOT NULL,
    answered_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS api_analytics_responses_by_business
    ON api_analytics_responses (business_id, asked_at);
CREATE INDEX IF NOT EXISTS api_analytics_responses_by_conversation
    ON api_analytics_responses (conversation_id);

-- Every handoff from the bot to a person (a reassignment between people is not one).
CREATE TABLE IF NOT EXISTS api_analytics_handoffs (
    position        bigint      PRIMARY KEY,  -- the HandedOff's global position
    business_id     text        NOT NULL,
    phone_number_id text        NOT NULL,
    conversation_id text        NOT NULL,
    at              timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS api_analytics_handoffs_by_business
    ON api_analytics_handoffs (business_id, at);
CREATE INDEX IF NOT EXISTS api_analytics_handoffs_by_conversation
    ON api_analytics_handoffs (conversation_id);

-- Messages per day of a business (the conversations read model's own table).
CREATE INDEX IF NOT EXISTS api_messages_by_business_time ON api_messages (business_id, created_at);
