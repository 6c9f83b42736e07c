-- The marketing opt-outs as the campaigns service knows them (services/campaigns/optouts.py),
-- so that a contact who opts out while a campaign runs is skipped (`opted_out`) rather
-- than sent a MARKETING template: the customer's STOP (BotActed), Meta's user_preferences,
-- the business's PATCH and Meta's 131050. One row per contact; `position` is the global
-- position of the event that set it (the latest wins).
CREATE TABLE IF NOT EXISTS campaign_opt_outs (
    contact_id text    PRIMARY KEY,
    opted_out  boolean NOT NULL,
    position   bigint  NOT NULL
);

-- Customers Meta refused for its per-user marketing limit (131049), per business: no
-- MARKETING template of any campaign goes to them for 24 h after (skipped,
-- `marketing_limit`), since Meta would refuse it again.
CREATE TABLE IF NOT EXISTS campaign_marketing_limited (
    business_id text        NOT NULL,
    customer    text        NOT NULL,
    limited_at  timestamptz NOT NULL,
    PRIMARY KEY (business_id, customer)
);
