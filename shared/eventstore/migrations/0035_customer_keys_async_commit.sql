-- A customer's data key made without waiting for the WAL flush, in one round trip (the
-- insert of the missing keys and the read of all of them). Every service makes the key of
-- a customer it meets first, so a burst of new customers was a burst of commits, each
-- waiting its turn at the flush behind the appends (pg_stat_activity at 100 new customers
-- a second: a fifth of the active samples were these inserts waiting on WALWrite/WALSync).
--
-- Nothing is lost by it. A key only matters once something sealed with it is stored, and
-- that is always a later transaction that commits synchronously (the append of the events
-- it seals; a key is read by others only after this commit). The WAL is one sequence: the
-- flush of that later commit also flushes this one, on the primary and on a standby alike.
-- A crash before that flush loses the key and the events together; the message they were
-- for was never acknowledged, and is handled again with a new key.
--
-- Call it on its own, outside a transaction (KeyRing.load does): inside one, the async
-- commit would apply to that whole transaction.
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
    RETURN QUERY SELECT c.key_id, c.wrapped FROM customer_keys c WHERE c.key_id = ANY(p_key_ids);
END $$;
