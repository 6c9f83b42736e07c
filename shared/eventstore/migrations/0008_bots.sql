-- The version of each number's published bot definition (0: none), written by the api with
-- the number's BotPublished event, so that every service's directory knows it.
ALTER TABLE directory_numbers ADD COLUMN IF NOT EXISTS bot_version integer NOT NULL DEFAULT 0;
