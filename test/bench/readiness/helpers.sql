-- helpers.sql: what the readiness benchmark needs in each database.

-- bench.time_ms runs a statement runs times (after one warm-up) and returns
-- the median wall time in milliseconds, measured inside the server (no
-- client round trip).
CREATE SCHEMA IF NOT EXISTS bench;
CREATE OR REPLACE FUNCTION bench.time_ms(statement text, runs integer) RETURNS numeric
    LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz;
    times double precision[] := '{}';
BEGIN
    EXECUTE statement;
    FOR i IN 1 .. runs LOOP
        started := clock_timestamp();
        EXECUTE statement;
        times := times || extract(epoch FROM clock_timestamp() - started) * 1000;
    END LOOP;
    RETURN round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) FROM unnest(times) t)::numeric, 3);
END $$;

-- bench.layered registers the issue's layered random DAG of n steps (each
-- step depends on the one before and on one earlier step), creates a task
-- of it and returns the task id.
CREATE OR REPLACE FUNCTION bench.layered(n integer) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM setseed(0.5);
    PERFORM tasker.register_template(jsonb_build_object(
        'namespace', 'bench', 'name', 'layered_' || n, 'version', '1.0.0',
        'steps', (SELECT jsonb_agg(jsonb_build_object('name', 's' || i, 'queue', 'bench_layered',
                                                      'depends_on', deps) ORDER BY i)
                    FROM (SELECT i, CASE WHEN i = 1 THEN '[]'::jsonb
                                         WHEN i = 2 THEN '["s1"]'::jsonb
                                         ELSE jsonb_build_array('s' || (i - 1),
                                                                's' || (1 + floor(random() * (i - 2)))::int)
                                    END AS deps
                            FROM generate_series(1, n) i) g)));
    RETURN tasker.create_task('bench', 'layered_' || n);
END $$;
