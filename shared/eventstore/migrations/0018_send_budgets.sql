-- One send budget per number, shared by every outbound instance: Meta's throughput limit is
-- the number's, whatever the count of processes sending from it.

-- GCRA (the generic cell rate algorithm): a number's next free slot. One row per number, one
-- short row lock per send; the database's clock is the only clock, so instances' clocks
-- never disagree about it.
CREATE TABLE IF NOT EXISTS send_budgets (
    key     text        PRIMARY KEY,
    next_at timestamptz NOT NULL
);

-- Reserve the next slot of a key at one send per p_interval seconds, p_tolerance seconds of
-- burst allowed ahead of it; returns how many seconds the caller waits before sending (0 when
-- it may send now). A reservation is never given back: a caller that dies wastes one slot.
CREATE OR REPLACE FUNCTION reserve_send(
    p_key text, p_interval double precision, p_tolerance double precision
) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    t    timestamptz := clock_timestamp();
    step interval    := make_interval(secs => p_interval);
    slot timestamptz;
BEGIN
    INSERT INTO send_budgets AS b (key, next_at) VALUES (p_key, t + step)
    ON CONFLICT (key) DO UPDATE SET next_at = greatest(b.next_at, t) + step
    RETURNING b.next_at - step INTO slot;
    RETURN greatest(0, extract(epoch FROM slot - t) - p_tolerance);
END $$;
