-- Which transaction destroyed a data key (shared/crypto/datakeys.py, KeyRing.sweep): a
-- process learns of every erasure committed since its last look with one query, by
-- transaction id, instead of reading each customer's key again every KEY_TTL seconds.
-- NULL in tombstones from before (a process that meets one reads it as before).
ALTER TABLE customer_keys ADD COLUMN IF NOT EXISTS erased_xid xid8;
CREATE INDEX IF NOT EXISTS customer_keys_erased_xid ON customer_keys (erased_xid)
    WHERE erased_xid IS NOT NULL;
