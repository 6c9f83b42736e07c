-- The conversation's idle hand-back (services/conversation/idle.py): one row per
-- conversation a person has (handed off, waiting or assigned), with the time and stream
-- version of its last activity (the handoff, a message of the customer or of a person);
-- written by its subscription over the conversation streams with its checkpoint (so it can be
-- dropped and rebuilt from the events), claimed by the poller when idle for
-- HANDBACK_IDLE_SECONDS.
CREATE TABLE IF NOT EXISTS conversation_handback_timers (
    conversation_id text        PRIMARY KEY,
    active_at       timestamptz NOT NULL,  -- when the last activity was recorded
    active_version  bigint      NOT NULL,  -- its version in the conversation's stream
    fired_at        timestamptz            -- when last published (NULL: not yet)
);
CREATE INDEX IF NOT EXISTS conversation_handback_timers_idle
    ON conversation_handback_timers (active_at);
