-- The api's templates read model (services/api/projections/templates.py): every message
-- template of a business's WABAs, from TemplateRecorded (syncs and creations) and Meta's
-- template webhooks (status, quality, category), rebuilt from the event store like the
-- other read models.
CREATE TABLE IF NOT EXISTS api_templates (
    template_id      text        PRIMARY KEY,  -- Meta's id
    business_id      text        NOT NULL,
    waba_id          text        NOT NULL,
    name             text        NOT NULL,
    language         text        NOT NULL,
    category         text        NOT NULL DEFAULT '',
    status           text        NOT NULL DEFAULT '',
    parameter_format text        NOT NULL DEFAULT 'POSITIONAL',
    components       jsonb       NOT NULL DEFAULT '[]'::jsonb,
    quality          text,
    reason           text,                     -- Meta's reason for the last status change
    created_here_at  timestamptz,              -- created through the api: the hourly cap
    updated_at       timestamptz NOT NULL,
    sort_position    bigint      NOT NULL      -- newest first: the event that made it
);
CREATE INDEX IF NOT EXISTS api_templates_by_business
    ON api_templates (business_id, sort_position DESC, template_id DESC);
CREATE INDEX IF NOT EXISTS api_templates_by_name ON api_templates (business_id, name, language);
CREATE INDEX IF NOT EXISTS api_templates_created
    ON api_templates (waba_id, created_here_at) WHERE created_here_at IS NOT NULL;
