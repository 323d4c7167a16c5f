--
-- health_analytics: system_health_counts (tasks and steps per state from
-- maintained counters, retry and backoff counts, connections, worker
-- slots) and analytics_metrics (from the transition log).
--
-- Other tests leave tasks in this database, so the counts are checked two
-- ways: against a full count of the tables (every column, exactly), and as
-- deltas over known data created inside one REPEATABLE READ transaction
-- (which sees no one else's changes).  Analytics over a window in the year
-- 2100, where only this file's backdated data lies.
--
-- Namespace: hlt_test.  Tasks are labelled by their reason.
--
\set SHOW_CONTEXT never
SET tasker.backoff_jitter = 0;

CREATE SCHEMA hlt_test;

CREATE PROCEDURE hlt_test.expect_error(statement text) LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
BEGIN
    BEGIN
        EXECUTE statement;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        RAISE NOTICE 'error %: %', state, message;
        RETURN;
    END;
    RAISE EXCEPTION 'expected an error from: %', statement;
END $$;

CREATE FUNCTION hlt_test.task(label text) RETURNS bigint LANGUAGE sql AS $$
    SELECT k.task_id FROM tasker.tasks k
      JOIN tasker.named_tasks t USING (named_task_id) JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = 'hlt_test' AND k.reason = label
$$;

-- counter_errors compares every count of system_health_counts with a full
-- count of the tables, in the same snapshot; 'all exact' when they agree.
CREATE FUNCTION hlt_test.counter_errors() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s: %s counted, %s in the table', c.name, c.counter, c.actual),
                               '; '), 'all exact')
      FROM tasker.system_health_counts() h,
           LATERAL (VALUES
               ('total_tasks', h.total_tasks, (SELECT count(*) FROM tasker.tasks)),
               ('pending_tasks', h.pending_tasks,
                (SELECT count(*) FROM tasker.tasks WHERE current_state = 'pending')),
               ('in_progress_tasks', h.in_progress_tasks,
                (SELECT count(*) FROM tasker.tasks WHERE current_state = 'in_progress')),
               ('complete_tasks', h.complete_tasks,
                (SELECT count(*) FROM tasker.tasks WHERE current_state = 'complete')),
               ('error_tasks', h.error_tasks,
                (SELECT count(*) FROM tasker.tasks WHERE current_state = 'error')),
               ('cancelled_tasks', h.cancelled_tasks,
                (SELECT count(*) FROM tasker.tasks WHERE current_state = 'cancelled')),
               ('resolved_manually_tasks', h.resolved_manually_tasks,
                (SELECT count(*) FROM tasker.tasks WHERE current_state = 'resolved_manually')),
               ('total_steps', h.total_steps, (SELECT count(*) FROM tasker.workflow_steps)),
               ('pending_steps', h.pending_steps,
                (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'pending')),
               ('in_progress_steps', h.in_progress_steps,
                (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'in_progress')),
               ('complete_steps', h.complete_steps,
                (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'complete')),
               ('error_steps', h.error_steps,
                (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'error')),
               ('retryable_error_steps', h.retryable_error_steps,
                (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'waiting_for_retry')),
               ('exhausted_retry_steps', h.exhausted_retry_steps,
                (SELECT count(*) FROM tasker.workflow_steps
                  WHERE current_state = 'error' AND attempts >= max_attempts)),
               ('in_backoff_steps', h.in_backoff_steps,
                (SELECT count(*) FROM tasker.workflow_steps
                  WHERE current_state = 'waiting_for_retry' AND next_attempt_at > now())),
               ('cancelled_steps', h.cancelled_steps,
                (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'cancelled')),
               ('resolved_manually_steps', h.resolved_manually_steps,
                (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'resolved_manually'))
           ) AS c(name, counter, actual)
     WHERE c.counter IS DISTINCT FROM c.actual
$$;

-- snapshots taken at the start of the transaction below
CREATE TEMP TABLE hlt_before AS SELECT * FROM tasker.system_health_counts() WITH NO DATA;
CREATE TEMP TABLE hlt_analytics_before AS SELECT * FROM tasker.analytics_metrics() WITH NO DATA;

-- health_delta shows what changed since the snapshot in hlt_before.
CREATE FUNCTION hlt_test.health_delta()
    RETURNS TABLE (what text, delta bigint) LANGUAGE sql AS $$
    SELECT d.what, d.delta
      FROM tasker.system_health_counts() h, hlt_before b,
           LATERAL (VALUES
               ('total_tasks', h.total_tasks - b.total_tasks),
               ('pending_tasks', h.pending_tasks - b.pending_tasks),
               ('in_progress_tasks', h.in_progress_tasks - b.in_progress_tasks),
               ('complete_tasks', h.complete_tasks - b.complete_tasks),
               ('error_tasks', h.error_tasks - b.error_tasks),
               ('cancelled_tasks', h.cancelled_tasks - b.cancelled_tasks),
               ('resolved_manually_tasks', h.resolved_manually_tasks - b.resolved_manually_tasks),
               ('total_steps', h.total_steps - b.total_steps),
               ('pending_steps', h.pending_steps - b.pending_steps),
               ('in_progress_steps', h.in_progress_steps - b.in_progress_steps),
               ('complete_steps', h.complete_steps - b.complete_steps),
               ('error_steps', h.error_steps - b.error_steps),
               ('retryable_error_steps', h.retryable_error_steps - b.retryable_error_steps),
               ('exhausted_retry_steps', h.exhausted_retry_steps - b.exhausted_retry_steps),
               ('in_backoff_steps', h.in_backoff_steps - b.in_backoff_steps),
               ('cancelled_steps', h.cancelled_steps - b.cancelled_steps),
               ('resolved_manually_steps', h.resolved_manually_steps - b.resolved_manually_steps)
           ) AS d(what, delta)
$$;

-- work claims up to max ready steps of a queue and reports each as
-- outcomes says, keyed "label.step": "complete" (default), "fail:N"
-- (retryable, N seconds), "fail" (retryable, computed delay), "fail!"
-- (permanent), "hold".
CREATE FUNCTION hlt_test.work(queue text, max integer, outcomes jsonb DEFAULT '{}') RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    c record;
    outcome text;
    report text[] := '{}';
BEGIN
    FOR c IN SELECT w.*, k.reason FROM tasker.claim_steps(queue, 'worker', max) w
               JOIN tasker.tasks k ON k.task_id = w.task_id ORDER BY w.step_id LOOP
        outcome := coalesce(outcomes ->> (c.reason || '.' || c.step_name), 'complete');
        IF outcome = 'complete' THEN
            PERFORM tasker.complete_step(c.step_id, c.attempt, '{}');
        ELSIF outcome = 'fail' THEN
            outcome := tasker.fail_step(c.step_id, c.attempt, '{}');
        ELSIF outcome LIKE 'fail:%' THEN
            outcome := tasker.fail_step(c.step_id, c.attempt, '{}',
                                        backoff_seconds => split_part(outcome, ':', 2)::integer);
        ELSIF outcome = 'fail!' THEN
            outcome := tasker.fail_step(c.step_id, c.attempt, '{}', retryable => false);
        ELSE
            outcome := 'in_progress';
        END IF;
        report := report || format('%s.%s %s', c.reason, c.step_name, outcome);
    END LOOP;
    RETURN coalesce(nullif(array_to_string(report, ', '), ''), 'nothing claimed');
END $$;

SELECT tasker.register_template('{
  "namespace": "hlt_test", "name": "pair", "version": "1.0.0",
  "steps": [{"name": "a", "queue": "hlt_pair"}, {"name": "b", "queue": "hlt_pair", "depends_on": ["a"]}]
  }') IS NOT NULL AS pair;
SELECT tasker.register_template('{
  "namespace": "hlt_test", "name": "solo", "version": "1.0.0",
  "steps": [{"name": "x", "queue": "hlt_solo", "max_attempts": 1}]
  }') IS NOT NULL AS solo;

---------------------------------------------------------------------------
-- The counters match a full count, whatever the tests before left.
SELECT hlt_test.counter_errors();

---------------------------------------------------------------------------
-- Known data, in one REPEATABLE READ transaction: the counts move by
-- exactly what it does (its own changes are counted before it commits).
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO hlt_before SELECT * FROM tasker.system_health_counts();
INSERT INTO hlt_analytics_before SELECT * FROM tasker.analytics_metrics();
SELECT count(tasker.create_task('hlt_test', 'pair', reason => r)) AS pairs
  FROM unnest('{done, failed, backoff, due, resolved}'::text[]) r;
SELECT count(tasker.create_task('hlt_test', 'solo', reason => r)) AS solos
  FROM unnest('{exhausted, held, cancelled, untouched}'::text[]) r;
SELECT tasker.cancel_task(hlt_test.task('cancelled'));
SELECT tasker.resolve_step(s.workflow_step_id, '{}', 'by hand') FROM tasker.workflow_steps s
 WHERE s.task_id = hlt_test.task('resolved') AND s.name = 'a';
-- done.a completes; failed.a fails for good (not retryable, attempts
-- left); backoff.a retries in an hour; due.a retries now; resolved.b (its
-- parent resolved by hand) completes.  Then done.b, first in line.
SELECT hlt_test.work('hlt_pair', 10, '{"failed.a": "fail!", "backoff.a": "fail:3600", "due.a": "fail:0"}');
SELECT hlt_test.work('hlt_pair', 1);
-- exhausted.x fails on its only attempt; held.x stays claimed
SELECT hlt_test.work('hlt_solo', 2, '{"exhausted.x": "fail", "held.x": "hold"}');
SELECT k.reason, k.current_state AS task,
       string_agg(s.name || ' ' || s.current_state, ', ' ORDER BY s.name) AS steps
  FROM tasker.tasks k JOIN tasker.workflow_steps s USING (task_id)
 WHERE k.named_task_id IN (tasker.find_template('hlt_test', 'pair'), tasker.find_template('hlt_test', 'solo'))
 GROUP BY k.task_id, k.reason, k.current_state ORDER BY k.task_id;
SELECT * FROM hlt_test.health_delta();
-- and a rolled-back subtransaction counts for nothing
SAVEPOINT more;
SELECT tasker.create_task('hlt_test', 'pair', reason => 'rolled back') IS NOT NULL AS created;
SELECT what, delta FROM hlt_test.health_delta() WHERE what IN ('total_tasks', 'total_steps');
ROLLBACK TO SAVEPOINT more;
SELECT what, delta FROM hlt_test.health_delta() WHERE what IN ('total_tasks', 'total_steps');

-- analytics_metrics: active tasks (pending or in progress), namespaces
-- and task types in use move with the known data too.
SELECT a.active_tasks_count - b.active_tasks_count AS active,
       a.total_namespaces_count - b.total_namespaces_count AS namespaces,
       a.unique_task_types_count - b.unique_task_types_count AS task_types,
       a.analysis_period_start = now() - interval '1 hour' AS default_window_is_the_last_hour,
       a.calculated_at = now() AS calculated_now
  FROM tasker.analytics_metrics() a, hlt_analytics_before b;

-- Move the known data to 2100 — tasks and steps created at midnight,
-- done.a complete at 00:00:10, done.b and the task at 00:00:40, every other
-- move at 00:01 — and look at that window only.
UPDATE tasker.tasks SET created_at = '2100-01-01 00:00:00+00'
 WHERE named_task_id IN (tasker.find_template('hlt_test', 'pair'), tasker.find_template('hlt_test', 'solo'));
UPDATE tasker.workflow_steps s SET created_at = k.created_at
  FROM tasker.tasks k WHERE k.task_id = s.task_id AND k.created_at = '2100-01-01 00:00:00+00';
UPDATE tasker.task_transitions tr
   SET created_at = CASE WHEN tr.task_id = hlt_test.task('done') AND tr.to_state = 'complete'
                         THEN timestamptz '2100-01-01 00:00:40+00'
                         ELSE timestamptz '2100-01-01 00:01:00+00' END
  FROM tasker.tasks k WHERE k.task_id = tr.task_id AND k.created_at = '2100-01-01 00:00:00+00';
UPDATE tasker.workflow_step_transitions tr
   SET created_at = CASE WHEN tr.task_id = hlt_test.task('done') AND tr.to_state = 'complete'
                         THEN CASE s.name WHEN 'a' THEN timestamptz '2100-01-01 00:00:10+00'
                                          ELSE timestamptz '2100-01-01 00:00:40+00' END
                         ELSE timestamptz '2100-01-01 00:01:00+00' END
  FROM tasker.workflow_steps s
 WHERE s.task_id = tr.task_id AND s.workflow_step_id = tr.workflow_step_id
   AND s.created_at = '2100-01-01 00:00:00+00';
-- finished in the window: done and resolved (complete, after 40 and 60 s),
-- failed and exhausted (error), cancelled; steps: done.a, done.b,
-- resolved.b (complete, after 10, 40 and 60 s), failed.a, exhausted.x
-- (error), cancelled.x, resolved.a
SELECT active_tasks_count > 0 AS active, task_throughput, completion_count, error_count,
       completion_rate, error_rate, system_health_score, avg_task_duration, avg_step_duration,
       step_throughput, analysis_period_start = '2100-01-01 00:00:00+00' AS window_start
  FROM tasker.analytics_metrics('2100-01-01 00:00:00+00');
-- nothing after the data: no throughput, a perfect score
SELECT task_throughput, completion_count, error_count, completion_rate, error_rate,
       system_health_score, avg_task_duration, avg_step_duration, step_throughput
  FROM tasker.analytics_metrics('2100-01-02 00:00:00+00');
COMMIT;

-- Committed, the counters still match a full count.
SELECT hlt_test.counter_errors();

-- recount_states rebuilds the counters from a full count (into row 0),
-- and they match; it refuses to run under a snapshot older than its lock.
SELECT tasker.recount_states();
SELECT count(*) FILTER (WHERE slot = 0) AS recounted_rows FROM tasker.state_counts;
SELECT hlt_test.counter_errors();
BEGIN ISOLATION LEVEL REPEATABLE READ;
CALL hlt_test.expect_error('SELECT tasker.recount_states()');
ROLLBACK;

-- Connections and background-worker slots.
SELECT active_connections >= 1 AS me_at_least,
       max_connections = current_setting('max_connections')::bigint AS max_connections,
       busy_worker_slots >= 0 AND free_worker_slots >= 0 AS non_negative,
       busy_worker_slots + free_worker_slots = current_setting('max_worker_processes')::bigint AS slots_add_up
  FROM tasker.system_health_counts();
