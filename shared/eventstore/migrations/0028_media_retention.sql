-- A business's media retention (docs/privacy.md): files its customers sent are deleted this
-- many days after the message (NULL: the deployment's MEDIA_RETENTION_DAYS; 0 there:
-- kept). The messages stay; their media answers `media_expired`.
ALTER TABLE privacy_settings ADD COLUMN IF NOT EXISTS media_days integer;
-- The expiry finds old files through the messages read model: by business and time.
CREATE INDEX IF NOT EXISTS api_messages_with_media
    ON api_messages (business_id, created_at) WHERE media IS NOT NULL;
-- Who else uses a file: messages of the same customer (the store keeps one copy per
-- customer), or anyone's for files kept before that (their keys name no owner).
CREATE INDEX IF NOT EXISTS api_messages_by_store_key
    ON api_messages ((media->>'store_key')) WHERE media ? 'store_key';
