-- Data keys read one primary-key probe each, whatever the planner's statistics say. As
-- `key_id = ANY($1)`, a cached generic plan made while the table held a few keys stayed a
-- scan of every key as the table grew wherever nothing analysed it (autovacuum off, or not
-- yet run on a fresh deployment): every new customer read the whole table
-- (tests/integration/test_stale_plans.py). LIMIT 1 keeps the join a loop of probes (key_id
-- is the primary key). KeyRing.load reads through it, and create_customer_keys (0035) reads
-- its keys back through it.
CREATE OR REPLACE FUNCTION read_customer_keys(p_key_ids text[])
RETURNS TABLE (key_id text, wrapped bytea)
LANGUAGE sql STABLE AS $$
    SELECT c.key_id, c.wrapped FROM unnest(p_key_ids) AS s(id) CROSS JOIN LATERAL
           (SELECT x.key_id, x.wrapped FROM customer_keys x WHERE x.key_id = s.id LIMIT 1) c
$$;

CREATE OR REPLACE FUNCTION create_customer_keys(p_key_ids text[], p_wrapped bytea[])
RETURNS TABLE (key_id text, wrapped bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO customer_keys AS k (key_id, wrapped)
    SELECT * FROM unnest(p_key_ids, p_wrapped)
    ON CONFLICT ON CONSTRAINT customer_keys_pkey DO NOTHING;
    -- A new snapshot: the keys another writer won the race for are seen too.
    RETURN QUERY SELECT * FROM read_customer_keys(p_key_ids);
END $$;
