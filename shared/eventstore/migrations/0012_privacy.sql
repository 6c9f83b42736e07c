-- Customers' data keys (shared/crypto/datakeys.py): one per subject, wrapped by the master
-- key, named by a keyed pseudonym of the subject. Setting `wrapped` to NULL destroys the key:
-- the crypto-shredding of everything sealed under it. The row stays as a tombstone, so that
-- no process makes the subject a new key (what is still on its way for it is dropped). Back it up apart from `events` (docs/privacy.md): a restored
-- older copy of this table would bring erased customers back, a restored `events` cannot.
CREATE TABLE IF NOT EXISTS customer_keys (
    key_id     text        PRIMARY KEY,
    wrapped    bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz
);

-- Erasures asked through the API (services/api/erasure.py): their progress.
CREATE TABLE IF NOT EXISTS erasures (
    erasure_id   text        PRIMARY KEY,
    business_id  text        NOT NULL,
    contact_id   text        NOT NULL,
    actor        text        NOT NULL DEFAULT '',
    status       text        NOT NULL DEFAULT 'pending',  -- pending, done
    phase        int         NOT NULL DEFAULT 0,  -- 0 plan and shred, 1 files, 2 settle
    -- What the later phases must reach (ids, conversations, files), sealed by the master
    -- key for the erasure's own id, and dropped when it is done.
    plan         bytea,
    plan_at      timestamptz,
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    counts       jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS erasures_by_contact ON erasures (business_id, contact_id);
CREATE INDEX IF NOT EXISTS erasures_pending ON erasures (requested_at) WHERE status = 'pending';

-- Keyed pseudonyms of the customer ids (wa_id, user_id) of a business that were erased:
-- dedup gives a customer who writes again a new key, so nothing joins them to the erased
-- streams. `epoch` counts the erasures of that id.
CREATE TABLE IF NOT EXISTS erased_ids (
    pseudonym text   PRIMARY KEY,
    epoch     int    NOT NULL
);
