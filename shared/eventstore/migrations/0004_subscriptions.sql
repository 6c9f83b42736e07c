-- Subscriptions: one checkpoint per named subscriber, and reading one category of the log.

-- Where each named subscription has got to, in read_all order. The runner
-- (shared/eventstore/subscription.py) moves it in the same transaction as the subscriber's
-- own writes.
CREATE TABLE IF NOT EXISTS subscription_checkpoints (
    name            text        PRIMARY KEY,
    transaction_id  bigint      NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The relay's checkpoint moves here unchanged (same name, same position), so an upgraded
-- relay neither delivers again nor skips. Locked first: a relay still running the old code
-- cannot move it between the copy and the drop.
LOCK TABLE webhook_relay_checkpoints IN ACCESS EXCLUSIVE MODE;
INSERT INTO subscription_checkpoints (name, transaction_id, global_position, updated_at)
SELECT name, transaction_id, global_position, updated_at FROM webhook_relay_checkpoints
ON CONFLICT (name) DO NOTHING;
DROP TABLE webhook_relay_checkpoints;

-- The events of one category (the stream name up to its first '-'), after a position, in
-- read_all's order and under its rule: only rows older than every open transaction, so a
-- reader never passes a row that commits later. message-db's get_category_messages, with
-- Emmett's rule.
CREATE OR REPLACE FUNCTION read_category(
    p_category text, p_after_txid xid8, p_after_position bigint, p_limit int
) RETURNS SETOF events
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- EXECUTE plans each call for its own values. A cached generic plan cannot tell a rare
    -- category (events_by_category, then sort) from a common one (events_by_transaction,
    -- filtered), and the wrong choice reads the whole log since the category's last event.
    RETURN QUERY EXECUTE $q$
        SELECT * FROM events
         WHERE split_part(stream_name, '-', 1) = $1
           AND (transaction_id, global_position) > ($2, $3)
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY transaction_id, global_position
         LIMIT $4
    $q$ USING p_category, p_after_txid, p_after_position, p_limit;
END;
$$;
