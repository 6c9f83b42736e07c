-- Where a campaign's message goes (services/campaigns/): the id the audience gave (a wa_id or
-- a user id). The recipient's `customer` is their key, a pseudonym since keys stopped being
-- the customer's id, so it can no longer be sent to. '' in rows from before: their key was
-- that id.
ALTER TABLE campaign_sends ADD COLUMN IF NOT EXISTS address text NOT NULL DEFAULT '';
