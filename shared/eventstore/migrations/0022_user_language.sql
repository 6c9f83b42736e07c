-- The console's language, chosen by each user (services/api/console/i18n).
ALTER TABLE api_users ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT 'en';
