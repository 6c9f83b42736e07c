-- Where a conversation's replies go (services/api/projections/conversations.py): the id the
-- customer's key was made from, shown as the contact's wa_id or user_id until the contacts
-- read model has them (its own subscription, which may be behind). NULL in rows from
-- before, whose key was that id.
ALTER TABLE api_conversations ADD COLUMN IF NOT EXISTS address text;
