-- Which transaction destroyed a data key (shared/crypto/datakeys.py, KeyRing.sweep): a
-- process learns of every erasure committed since its last look with one query, by
-- transaction id, instead of reading each customer's key again every KEY_TTL seconds.
-- NULL in tombstones from before (a process that meets one reads it as before).
ALTER TABLE customer_keys ADD COLUMN IF NOT EXISTS erased_xid xid8;
CREATE INDEX IF NOT EXISTS customer_keys_erased_xid ON customer_keys (erased_xid)
    WHERE erased_xid IS NOT NULL;

-- Set by the table itself, whoever destroys the key (a process of an older version during a
-- rolling upgrade too): the sweeps of the others must hear of it.
CREATE OR REPLACE FUNCTION customer_keys_erased_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.wrapped IS NULL AND (TG_OP = 'INSERT' OR OLD.wrapped IS NOT NULL) THEN
        NEW.erased_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER customer_keys_erased_xid BEFORE INSERT OR UPDATE ON customer_keys
    FOR EACH ROW EXECUTE FUNCTION customer_keys_erased_xid();
