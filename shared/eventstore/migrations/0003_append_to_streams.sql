-- Append to several streams in one statement (one round trip), all or nothing.
-- The batch is flattened: stream i owns p_counts[i] consecutive entries of the event arrays.
-- Stream locks are taken in a fixed order first, so two batches touching the same streams
-- cannot deadlock; append_to_stream takes them again (advisory locks are re-entrant).
CREATE OR REPLACE FUNCTION append_to_streams(
    p_streams text[], p_expected bigint[], p_counts int[], p_ids uuid[], p_types text[],
    p_data jsonb[], p_metadata jsonb[]
) RETURNS TABLE (stream_index int, event_id uuid, stream_version bigint,
                 global_position bigint, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_first int := 1;
    v_last  int;
    i       int;
BEGIN
    PERFORM pg_advisory_xact_lock(k)
       FROM (SELECT DISTINCT hashtextextended(s, 0) AS k FROM unnest(p_streams) s) locks
      ORDER BY k;
    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        v_last := v_first + p_counts[i] - 1;
        RETURN QUERY
            SELECT i, a.event_id, a.stream_version, a.global_position, a.duplicate
              FROM append_to_stream(p_streams[i], p_expected[i], p_ids[v_first:v_last],
                                    p_types[v_first:v_last], p_data[v_first:v_last],
                                    p_metadata[v_first:v_last]) a;
        v_first := v_last + 1;
    END LOOP;
END;
$$;
