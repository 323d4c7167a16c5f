-- tasker.metrics(): Prometheus exposition text for a scraper (e.g.
-- postgres_exporter's custom query: SELECT tasker.metrics()).

-- metric_value reads one sample's value out of the text.
CREATE FUNCTION pg_temp.metric_value(body text, sample text) RETURNS double precision
LANGUAGE sql AS $$
    SELECT (regexp_match(body, '(?:^|\n)' || regexp_replace(sample, '([{}"+.])', '\\\1', 'g') || ' ([-0-9.e+]+)'))[1]::double precision
$$;

-- Every line is a HELP or TYPE comment or a sample "name{labels} value";
-- every metric has its HELP and TYPE.
WITH lines AS (SELECT line FROM regexp_split_to_table(rtrim(tasker.metrics(), E'\n'), E'\n') line)
SELECT count(*) FILTER (WHERE line !~ '^# (HELP|TYPE) tasker_[a-z_]+ .+$'
                          AND line !~ '^tasker_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$') AS malformed_lines,
       count(*) FILTER (WHERE line LIKE '# TYPE %') AS typed_metrics,
       array_agg(DISTINCT split_part(line, ' ', 4) ORDER BY split_part(line, ' ', 4))
           FILTER (WHERE line LIKE '# TYPE %') AS types
  FROM lines;
SELECT string_agg(split_part(line, ' ', 3), ', ' ORDER BY n) AS metrics_in_order
  FROM regexp_split_to_table(tasker.metrics(), E'\n') WITH ORDINALITY AS l(line, n)
 WHERE line LIKE '# TYPE %';

-- Known work moves the numbers by known amounts: one external step claimed,
-- failed once, claimed again and completed.
SET tasker.backoff_jitter = 0;
SELECT tasker.register_template('{"namespace": "metrics_test", "name": "one",
  "steps": [{"name": "only", "queue": "metrics_q"}]}') > 0 AS registered;
SELECT tasker.metrics() AS before \gset
SELECT tasker.create_task('metrics_test', 'one') AS t \gset
SELECT pg_temp.metric_value(tasker.metrics(), 'tasker_queue_steps{queue="metrics_q",in_database="false",status="ready"}') AS ready_in_queue;
SELECT tasker.fail_step(step_id, attempt, '{}', true, 0) FROM tasker.claim_steps('metrics_q', 'm', 1);
SELECT tasker.complete_step(step_id, attempt) FROM tasker.claim_steps('metrics_q', 'm', 1);
SELECT tasker.metrics() AS after \gset
SELECT s.sample, pg_temp.metric_value(:'after', s.sample) - pg_temp.metric_value(:'before', s.sample) AS delta
  FROM unnest(ARRAY['tasker_step_transitions_total{state="in_progress"}',
                    'tasker_step_transitions_total{state="waiting_for_retry"}',
                    'tasker_step_transitions_total{state="complete"}',
                    'tasker_task_transitions_total{state="in_progress"}',
                    'tasker_task_transitions_total{state="complete"}',
                    'tasker_tasks{state="complete"}',
                    'tasker_steps{state="complete"}',
                    'tasker_step_duration_seconds_count',
                    'tasker_step_duration_seconds_bucket{le="+Inf"}']) AS s(sample);
-- the histogram is cumulative: buckets never decrease, +Inf equals the count
WITH b AS (SELECT (m)[1]::double precision AS le_value, (m)[2]::double precision AS n, ord
             FROM regexp_matches(:'after', 'tasker_step_duration_seconds_bucket\{le="([0-9.e+]+)"\} ([0-9.e+]+)', 'g')
                  WITH ORDINALITY AS r(m, ord))
SELECT bool_and(n >= coalesce(prev, 0)) AS cumulative,
       bool_and(le_value > coalesce(prev_le, 0)) AS bounds_increase
  FROM (SELECT n, le_value, lag(n) OVER (ORDER BY ord) AS prev, lag(le_value) OVER (ORDER BY ord) AS prev_le FROM b) x;
SELECT pg_temp.metric_value(:'after', 'tasker_step_duration_seconds_bucket{le="+Inf"}')
     = pg_temp.metric_value(:'after', 'tasker_step_duration_seconds_count') AS inf_bucket_is_count;
-- a rolled-back transition is not counted
BEGIN;
SELECT tasker.create_task('metrics_test', 'one') AS t2 \gset
SELECT tasker.complete_step(step_id, attempt) FROM tasker.claim_steps('metrics_q', 'm', 1);
ROLLBACK;
SELECT pg_temp.metric_value(tasker.metrics(), 'tasker_step_transitions_total{state="complete"}')
     - pg_temp.metric_value(:'after', 'tasker_step_transitions_total{state="complete"}') AS counted_after_rollback;
