-- A business's retention (docs/privacy.md): contacts silent for longer than this many days
-- are erased by the api's eraser. NULL: the deployment's RETENTION_DAYS (0 there: forever).
-- Written by the api with the RetentionChanged event that records it.
CREATE TABLE IF NOT EXISTS privacy_settings (
    business_id             text        PRIMARY KEY,
    contacts_inactive_days  integer,
    updated_at              timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE erasures ADD COLUMN IF NOT EXISTS reason text NOT NULL DEFAULT 'request';
CREATE INDEX IF NOT EXISTS api_contacts_by_last_seen ON api_contacts (business_id, last_seen_at);
