--------------------------------------------------------------------------
-- 72_metrics.sql: tasker.metrics(), Prometheus exposition text.
--------------------------------------------------------------------------

CREATE FUNCTION tasker._metric_counters(OUT metric text, OUT label text, OUT value double precision)
    RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_metric_counters';

CREATE FUNCTION tasker.metrics() RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    out text[] := '{}';
    h record;
    r record;
    counters boolean := EXISTS (SELECT 1 FROM tasker._metric_counters());
BEGIN
    SELECT * INTO h FROM tasker.system_health_counts();

    out := out || '# HELP tasker_tasks Tasks in each state.'::text || '# TYPE tasker_tasks gauge'::text;
    out := out || format('tasker_tasks{state="pending"} %s', h.pending_tasks)
               || format('tasker_tasks{state="in_progress"} %s', h.in_progress_tasks)
               || format('tasker_tasks{state="complete"} %s', h.complete_tasks)
               || format('tasker_tasks{state="error"} %s', h.error_tasks)
               || format('tasker_tasks{state="cancelled"} %s', h.cancelled_tasks)
               || format('tasker_tasks{state="resolved_manually"} %s', h.resolved_manually_tasks);
    out := out || '# HELP tasker_steps Steps in each state.'::text || '# TYPE tasker_steps gauge'::text;
    out := out || format('tasker_steps{state="pending"} %s', h.pending_steps)
               || format('tasker_steps{state="in_progress"} %s', h.in_progress_steps)
               || format('tasker_steps{state="waiting_for_retry"} %s', h.retryable_error_steps)
               || format('tasker_steps{state="complete"} %s', h.complete_steps)
               || format('tasker_steps{state="error"} %s', h.error_steps)
               || format('tasker_steps{state="cancelled"} %s', h.cancelled_steps)
               || format('tasker_steps{state="resolved_manually"} %s', h.resolved_manually_steps);
    out := out || '# HELP tasker_steps_in_backoff Steps waiting out a retry delay.'::text
               || '# TYPE tasker_steps_in_backoff gauge'::text
               || format('tasker_steps_in_backoff %s', h.in_backoff_steps);

    out := out || '# HELP tasker_queue_steps Steps with no pending parents, per queue (or SQL handler) and status.'::text
               || '# TYPE tasker_queue_steps gauge'::text;
    FOR r IN SELECT * FROM tasker.queue_depths ORDER BY queue LOOP
        out := out || format('tasker_queue_steps{queue="%s",in_database="%s",status="ready"} %s',
                             replace(replace(r.queue, '\', '\\'), '"', '\"'), CASE WHEN r.in_database THEN 'true' ELSE 'false' END, r.ready)
                   || format('tasker_queue_steps{queue="%s",in_database="%s",status="backing_off"} %s',
                             replace(replace(r.queue, '\', '\\'), '"', '\"'), CASE WHEN r.in_database THEN 'true' ELSE 'false' END, r.backing_off)
                   || format('tasker_queue_steps{queue="%s",in_database="%s",status="in_progress"} %s',
                             replace(replace(r.queue, '\', '\\'), '"', '\"'), CASE WHEN r.in_database THEN 'true' ELSE 'false' END, r.in_progress);
    END LOOP;

    out := out || '# HELP tasker_workers Background workers of tasker serving this database (launcher: the cluster).'::text
               || '# TYPE tasker_workers gauge'::text;
    FOR r IN SELECT k.kind, (SELECT count(*) FROM tasker.workers w
                               WHERE w.kind = k.kind
                                 AND (w.database IS NULL OR w.database = current_database())) AS n
               FROM unnest(ARRAY['launcher', 'dispatcher', 'executor']) AS k(kind) LOOP
        out := out || format('tasker_workers{kind="%s"} %s', r.kind, r.n);
    END LOOP;

    IF counters THEN
        out := out || '# HELP tasker_task_transitions_total Task transitions into each state since the server started.'::text
                   || '# TYPE tasker_task_transitions_total counter'::text;
        FOR r IN SELECT * FROM tasker._metric_counters() WHERE metric = 'task_transitions' LOOP
            out := out || format('tasker_task_transitions_total{state="%s"} %s', r.label, r.value);
        END LOOP;
        out := out || '# HELP tasker_step_transitions_total Step transitions into each state since the server started.'::text
                   || '# TYPE tasker_step_transitions_total counter'::text;
        FOR r IN SELECT * FROM tasker._metric_counters() WHERE metric = 'step_transitions' LOOP
            out := out || format('tasker_step_transitions_total{state="%s"} %s', r.label, r.value);
        END LOOP;
        out := out || '# HELP tasker_step_duration_seconds Duration of the step attempts that completed.'::text
                   || '# TYPE tasker_step_duration_seconds histogram'::text;
        FOR r IN SELECT * FROM tasker._metric_counters() WHERE metric LIKE 'step_duration%' LOOP
            out := out || CASE r.metric
                WHEN 'step_duration_bucket' THEN format('tasker_step_duration_seconds_bucket{le="%s"} %s', r.label, r.value)
                WHEN 'step_duration_sum' THEN format('tasker_step_duration_seconds_sum %s', r.value)
                ELSE format('tasker_step_duration_seconds_count %s', r.value) END;
        END LOOP;
    END IF;
    RETURN array_to_string(out, E'\n') || E'\n';
END $$;
COMMENT ON FUNCTION tasker.metrics() IS
    'Prometheus exposition text: tasks and steps per state, queue depths, workers, transitions since start, step duration histogram.';
