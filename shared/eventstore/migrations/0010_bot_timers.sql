-- The conversation's timer for bot flows' time-outs (services/conversation/timers.py): one
-- row per conversation in a flow with a deadline, written by its subscription over the
-- conversation streams in the same transaction as its checkpoint (so it can be dropped and
-- rebuilt from the events), and claimed by the poller when due.
CREATE TABLE IF NOT EXISTS conversation_bot_timers (
    conversation_id text             PRIMARY KEY,
    deadline        double precision NOT NULL,  -- Unix seconds: BotState.deadline
    fired_at        timestamptz                 -- when last published (NULL: not yet)
);
CREATE INDEX IF NOT EXISTS conversation_bot_timers_due ON conversation_bot_timers (deadline);
