-- The event store: one append-only table and the function that appends to it.
CREATE TABLE IF NOT EXISTS events (
    global_position bigserial   PRIMARY KEY,
    stream_name     text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    type            text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- Readers of the whole log only take rows older than every open transaction (Emmett's
    -- rule), so a row that commits later is never skipped.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_name, stream_version)
);

CREATE INDEX IF NOT EXISTS events_by_transaction ON events (transaction_id, global_position);
CREATE INDEX IF NOT EXISTS events_by_category
    ON events ((split_part(stream_name, '-', 1)), global_position);

-- Append events to one stream under a per-stream lock.
-- p_expected: NULL = any version, -1 = the stream must be empty, n = its last version is n.
-- Event ids are idempotency keys: an id already stored is reported as a duplicate, not
-- stored again, and a retry of an append that fully succeeded skips the version check.
CREATE OR REPLACE FUNCTION append_to_stream(
    p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_data jsonb[],
    p_metadata jsonb[]
) RETURNS TABLE (event_id uuid, stream_version bigint, global_position bigint,
                 duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
    v_total   int := coalesce(array_length(p_ids, 1), 0);
    v_known   int;
    i         int;
    v_row     record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
    SELECT count(*) INTO v_known FROM events e WHERE e.event_id = ANY (p_ids);
    SELECT coalesce(max(e.stream_version), -1) INTO v_current
      FROM events e WHERE e.stream_name = p_stream;
    IF p_expected IS NOT NULL AND v_known < v_total AND v_current <> p_expected THEN
        RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, v_current, p_expected
            USING ERRCODE = 'ES409';
    END IF;
    FOR i IN 1 .. v_total LOOP
        SELECT e.stream_version, e.global_position INTO v_row
          FROM events e WHERE e.event_id = p_ids[i];
        IF FOUND THEN
            event_id := p_ids[i];
            stream_version := v_row.stream_version;
            global_position := v_row.global_position;
            duplicate := true;
            RETURN NEXT;
            CONTINUE;
        END IF;
        v_current := v_current + 1;
        INSERT INTO events (stream_name, stream_version, event_id, type, data, metadata)
        VALUES (p_stream, v_current, p_ids[i], p_types[i], p_data[i], p_metadata[i])
        RETURNING events.global_position INTO global_position;
        event_id := p_ids[i];
        stream_version := v_current;
        duplicate := false;
        RETURN NEXT;
    END LOOP;
END;
$$;
