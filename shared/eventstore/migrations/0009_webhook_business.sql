-- Every CRM endpoint belongs to one business and receives only that business's events
-- (decision 0008). Endpoints registered before businesses existed belong to the default
-- business: the one the environment describes, whose events they received until now.

ALTER TABLE webhook_endpoints ADD COLUMN IF NOT EXISTS business_id text NOT NULL DEFAULT 'default';

CREATE INDEX IF NOT EXISTS webhook_endpoints_business
    ON webhook_endpoints (business_id, created_at);

