-- Campaigns. The api's read model (services/api/projections/campaigns.py): api_campaigns
-- and api_campaign_recipients, rebuilt from the event store like the other read models.
-- The campaigns service's own state (services/campaigns/): campaign_runs, campaign_sends
-- (the audience materialised at start, one row per recipient, and how far its send got),
-- campaign_reach (unique customers reached per business, for the messaging limit); due
-- times live there, so the scheduler survives a restart.
CREATE TABLE IF NOT EXISTS api_campaigns (
    campaign_id     text        PRIMARY KEY,
    business_id     text        NOT NULL,
    name            text        NOT NULL,
    phone_number_id text        NOT NULL,
    status          text        NOT NULL DEFAULT 'draft',
    paused_reason   text,
    definition      jsonb       NOT NULL,
    version         bigint      NOT NULL DEFAULT 0,  -- campaigncmd-<id>'s last version
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    sort_position   bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS api_campaigns_by_business
    ON api_campaigns (business_id, sort_position DESC, campaign_id DESC);

CREATE TABLE IF NOT EXISTS api_campaign_recipients (
    campaign_id     text        NOT NULL,
    seq             integer     NOT NULL,
    customer        text        NOT NULL,
    given           text        NOT NULL DEFAULT '',
    variant         integer     NOT NULL DEFAULT 0,
    message_id      text,
    wamid           text,
    conversation_id text,
    status          text        NOT NULL,  -- queued, sent, delivered, read, failed, skipped
    error           jsonb,
    skip_reason     text,
    replied         boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (campaign_id, seq)
);
CREATE INDEX IF NOT EXISTS api_campaign_recipients_message
    ON api_campaign_recipients (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_campaign_recipients_wamid
    ON api_campaign_recipients (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_campaign_recipients_conversation
    ON api_campaign_recipients (conversation_id) WHERE conversation_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS campaign_runs (
    campaign_id     text        PRIMARY KEY,
    business_id     text        NOT NULL,
    phone_number_id text        NOT NULL,
    state           text        NOT NULL,  -- draft, scheduled, running, paused, cancelled, completed
    paused_by       text,                  -- business or messaging_limit
    due_at          timestamptz,           -- a scheduled start, or the end of a limit pause
    variants        jsonb       NOT NULL,
    total           integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS campaign_runs_due ON campaign_runs (due_at) WHERE due_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS campaign_sends (
    campaign_id text    NOT NULL,
    seq         integer NOT NULL,
    customer    text    NOT NULL,
    variant     integer NOT NULL DEFAULT 0,
    components  jsonb,
    message_id  text,
    attempt     integer NOT NULL DEFAULT 1,
    state       text    NOT NULL,  -- pending, dispatched, sent, failed, skipped
    code        integer,
    PRIMARY KEY (campaign_id, seq)
);
CREATE INDEX IF NOT EXISTS campaign_sends_message ON campaign_sends (message_id);
CREATE INDEX IF NOT EXISTS campaign_sends_pending
    ON campaign_sends (campaign_id, seq) WHERE state = 'pending';

CREATE TABLE IF NOT EXISTS campaign_reach (
    business_id text        NOT NULL,
    customer    text        NOT NULL,
    reached_at  timestamptz NOT NULL,
    PRIMARY KEY (business_id, customer)
);
CREATE INDEX IF NOT EXISTS campaign_reach_window ON campaign_reach (business_id, reached_at);

-- The messaging limit Meta reported for a business (business_capability_update's
-- max_daily_conversations_per_business; NULL: unlimited): wins over the one set on the
-- business, since it is Meta's current word.
CREATE TABLE IF NOT EXISTS campaign_tiers (
    business_id     text        PRIMARY KEY,
    messaging_limit integer,
    learned_at      timestamptz NOT NULL
);
