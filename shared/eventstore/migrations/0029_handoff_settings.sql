-- A business's handoff settings (services/api/handoff_settings.py): how long a conversation
-- a person has may stay idle before it goes back to the bot. NULL: the deployment's
-- HANDBACK_IDLE_SECONDS; 0: never (the people hand it back). Written by the api with the
-- HandoffSettingsChanged event that records it; read by the conversation's idle timer.
CREATE TABLE IF NOT EXISTS handoff_settings (
    business_id   text        PRIMARY KEY,
    idle_seconds  integer,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
