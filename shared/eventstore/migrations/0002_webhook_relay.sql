-- Webhook relay: endpoints (projection of the endpoint-<id> streams, plus their secrets), the
-- subscription's checkpoint, and one row per delivery (endpoint x event) with its due time.

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    endpoint_id     text        PRIMARY KEY,
    url             text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    event_types     text[]      NOT NULL DEFAULT '{}',
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text,
    -- [{"secret": "whsec_...", "created_at": ..., "expires_at": ...}], newest first. Kept out
    -- of the event log on purpose: an append-only log cannot forget a leaked secret.
    secrets         jsonb       NOT NULL DEFAULT '[]'::jsonb,
    version         bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted         boolean     NOT NULL DEFAULT false
);

-- Where the relay's subscription to the event store has got to (read_all order).
CREATE TABLE IF NOT EXISTS webhook_relay_checkpoints (
    name            text        PRIMARY KEY,
    transaction_id  bigint      NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id      text        PRIMARY KEY,  -- the webhook-id header: same on every retry
    endpoint_id      text        NOT NULL,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,     -- the public type
    order_key        text        NOT NULL,     -- conversation: one lane per endpoint and key
    event_txid       bigint      NOT NULL,     -- the event's place in read_all order
    event_position   bigint      NOT NULL,
    event_time       timestamptz NOT NULL,
    body             text        NOT NULL,     -- the exact JSON sent (and signed) every time
    state            text        NOT NULL DEFAULT 'pending',  -- pending|succeeded|dead|cancelled
    attempts         integer     NOT NULL DEFAULT 0,
    failures         integer     NOT NULL DEFAULT 0,  -- the ones that advanced the schedule
    next_attempt_at  timestamptz NOT NULL,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    replays          integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

-- The head of each lane: the oldest pending delivery per (endpoint, conversation).
CREATE INDEX IF NOT EXISTS webhook_deliveries_lanes
    ON webhook_deliveries (endpoint_id, order_key, event_txid, event_position)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_listing
    ON webhook_deliveries (endpoint_id, state, created_at DESC);
CREATE INDEX IF NOT EXISTS webhook_deliveries_finished
    ON webhook_deliveries (finished_at) WHERE state IN ('succeeded', 'cancelled');

-- Replay "every event since a time" finds its starting point by time; a BRIN index is tiny
-- and fits an append-only table whose recorded_at grows with its position.
CREATE INDEX IF NOT EXISTS events_recorded_at_brin ON events USING brin (recorded_at);
