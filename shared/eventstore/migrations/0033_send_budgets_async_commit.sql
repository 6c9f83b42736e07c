-- reserve_send (0018) without waiting for the WAL flush: it was the database's costliest
-- statement under load (a commit per send, and every send of a number queued on its row
-- until the one before had flushed). A reservation is a pacing hint, not a record: a
-- database crash may forget the last few hundred milliseconds of them, and the sends after
-- it then start that much sooner, once. Nothing recorded depends on it. Call it on its own
-- (its transaction is the one whose commit no longer waits).
CREATE OR REPLACE FUNCTION reserve_send(
    p_key text, p_interval double precision, p_tolerance double precision
) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    t    timestamptz := clock_timestamp();
    step interval    := make_interval(secs => p_interval);
    slot timestamptz;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO send_budgets AS b (key, next_at) VALUES (p_key, t + step)
    ON CONFLICT (key) DO UPDATE SET next_at = greatest(b.next_at, t) + step
    RETURNING b.next_at - step INTO slot;
    RETURN greatest(0, extract(epoch FROM slot - t) - p_tolerance);
END $$;
