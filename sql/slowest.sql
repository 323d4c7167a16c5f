--
-- slowest: slowest_steps and slowest_tasks rank finished work by how long
-- it took from creation (to a step's completion; to a task's last finished
-- step), over tasks created since a time (default: the last 24 hours),
-- optionally of one namespace, template name and version.  Typed as
-- declared (the Rails engine's versions fail on every call: their
-- varchar(64) results do not match the text they select).
--
-- Namespace: slw_test.  The known data is moved to 2200-01-01 with exact
-- durations, so that nothing else falls in its window (the hour before).
--
\set SHOW_CONTEXT never
SET tasker.backoff_jitter = 0;

CREATE SCHEMA slw_test;

CREATE PROCEDURE slw_test.expect_error(statement text) LANGUAGE plpgsql AS $$
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

CREATE FUNCTION slw_test.task(label text) RETURNS bigint LANGUAGE sql AS $$
    SELECT k.task_id FROM tasker.tasks k
      JOIN tasker.named_tasks t USING (named_task_id) JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = 'slw_test' AND k.reason = label
$$;

-- run works the queue until nothing is ready: every step completes, except
-- those outcomes names: "fail:0" (retryable, due now; once), "fail!"
-- (permanent).
CREATE FUNCTION slw_test.run(outcomes jsonb DEFAULT '{}') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c record;
    outcome text;
    report text[] := '{}';
BEGIN
    LOOP
        SELECT * INTO c FROM tasker.claim_steps('slw_test', 'worker', 1);
        EXIT WHEN c.step_id IS NULL;
        outcome := coalesce(outcomes ->> c.step_name, 'complete');
        IF outcome = 'fail:0' AND c.attempt = 1 THEN
            outcome := tasker.fail_step(c.step_id, c.attempt, '{}', backoff_seconds => 0);
        ELSIF outcome = 'fail!' THEN
            outcome := tasker.fail_step(c.step_id, c.attempt, '{}', retryable => false);
        ELSE
            PERFORM tasker.complete_step(c.step_id, c.attempt, '{}');
            outcome := 'complete';
        END IF;
        report := report || format('%s#%s %s', c.step_name, c.attempt, outcome);
    END LOOP;
    RETURN array_to_string(report, ', ');
END $$;

-- backdate moves a task to 2200-01-01 plus its offset, and each finished
-- step to the task's creation plus the step's duration.
CREATE FUNCTION slw_test.backdate(label text, start_offset interval, durations jsonb) RETURNS void
    LANGUAGE sql AS $$
    UPDATE tasker.tasks SET created_at = timestamptz '2200-01-01 00:00:00+00' + start_offset
     WHERE task_id = slw_test.task(label);
    UPDATE tasker.workflow_steps s
       SET created_at = timestamptz '2200-01-01 00:00:00+00' + start_offset,
           completed_at = CASE WHEN s.completed_at IS NOT NULL
                               THEN timestamptz '2200-01-01 00:00:00+00' + start_offset
                                    + make_interval(secs => (durations ->> s.name)::double precision) END
     WHERE s.task_id = slw_test.task(label);
$$;

SELECT tasker.register_template('{"namespace": "slw_test", "name": "etl", "version": "1.0.0",
  "steps": [{"name": "extract"}, {"name": "transform", "depends_on": ["extract"]},
            {"name": "load", "depends_on": ["transform"]}]}') IS NOT NULL AS etl_1;
SELECT tasker.register_template('{"namespace": "slw_test", "name": "etl", "version": "2.0.0",
  "steps": [{"name": "extract"}, {"name": "load", "depends_on": ["extract"]}]}') IS NOT NULL AS etl_2;
SELECT tasker.register_template('{"namespace": "slw_test", "name": "report", "version": "1.0.0",
  "steps": [{"name": "render"}]}') IS NOT NULL AS report;

SELECT tasker.create_task('slw_test', 'etl', '1.0.0', reason => 'e1', initiator => 'ops',
                          source_system => 'cron') IS NOT NULL AS e1;
SELECT slw_test.run();
SELECT tasker.create_task('slw_test', 'etl', '1.0.0', reason => 'e2') IS NOT NULL AS e2;
SELECT slw_test.run('{"load": "fail:0"}');
SELECT tasker.create_task('slw_test', 'etl', reason => 'e3') IS NOT NULL AS e3;   -- newest: 2.0.0
SELECT slw_test.run();
SELECT tasker.create_task('slw_test', 'report', reason => 'r1') IS NOT NULL AS r1;
SELECT slw_test.run('{"render": "fail!"}');
SELECT tasker.create_task('slw_test', 'report', reason => 'r2') IS NOT NULL AS r2;  -- never run

SELECT slw_test.backdate('e1', '0 min', '{"extract": 5, "transform": 65, "load": 75}');
SELECT slw_test.backdate('e2', '10 min', '{"extract": 2, "transform": 12, "load": 200}');
SELECT slw_test.backdate('e3', '20 min', '{"extract": 30, "load": 31.5}');
SELECT slw_test.backdate('r1', '30 min', '{"render": 7}');
SELECT slw_test.backdate('r2', '40 min', '{}');

---------------------------------------------------------------------------
-- Completed steps, slowest first; failed and unrun steps are not ranked.
SELECT k.reason, s.step_name, s.task_name, s.namespace_name, s.version, s.duration_seconds,
       s.attempts, s.completed_at - s.created_at AS took, s.retryable, s.step_status
  FROM tasker.slowest_steps('2199-12-31 23:00:00+00', 20) s
  JOIN tasker.tasks k ON k.task_id = s.task_id;
-- the top 3, and the ids are the steps'
SELECT k.reason, s.step_name, s.duration_seconds,
       s.workflow_step_id = (SELECT w.workflow_step_id FROM tasker.workflow_steps w
                              WHERE w.task_id = s.task_id AND w.name = s.step_name) AS right_id
  FROM tasker.slowest_steps('2199-12-31 23:00:00+00', 3) s
  JOIN tasker.tasks k ON k.task_id = s.task_id;
-- one template version; tasks created since a time
SELECT k.reason, s.step_name, s.version, s.duration_seconds
  FROM tasker.slowest_steps('2199-12-31 23:00:00+00', 10, 'slw_test', 'etl', '2.0.0') s
  JOIN tasker.tasks k ON k.task_id = s.task_id;
SELECT k.reason, s.step_name, s.duration_seconds
  FROM tasker.slowest_steps('2200-01-01 00:15:00+00') s
  JOIN tasker.tasks k ON k.task_id = s.task_id;
-- the default window is the last 24 hours (the year 2200 is after it)
SELECT count(*) AS steps FROM tasker.slowest_steps(namespace_filter => 'slw_test', limit_count => 100);

---------------------------------------------------------------------------
-- Tasks, slowest first: from creation to their last finished step (complete
-- or error); a task with no finished step is not ranked.
SELECT s.task_name, s.namespace_name, s.version, s.duration_seconds, s.step_count,
       s.completed_steps, s.error_steps, s.completed_at - s.created_at AS took,
       s.initiator, s.source_system, s.task_id = slw_test.task(k.reason) AS right_id, k.reason
  FROM tasker.slowest_tasks('2199-12-31 23:00:00+00', 20) s
  JOIN tasker.tasks k ON k.task_id = s.task_id;
SELECT k.reason, s.duration_seconds
  FROM tasker.slowest_tasks('2199-12-31 23:00:00+00', 2, 'slw_test', 'etl') s
  JOIN tasker.tasks k ON k.task_id = s.task_id;
SELECT k.reason, s.duration_seconds
  FROM tasker.slowest_tasks('2199-12-31 23:00:00+00', 10, task_name_filter => 'report') s
  JOIN tasker.tasks k ON k.task_id = s.task_id;

-- The result types are the declared ones.
SELECT pg_typeof(step_name) AS step_name, pg_typeof(task_name) AS task_name,
       pg_typeof(namespace_name) AS namespace_name, pg_typeof(version) AS version,
       pg_typeof(duration_seconds) AS duration_seconds, pg_typeof(attempts) AS attempts,
       pg_typeof(created_at) AS created_at, pg_typeof(step_status) AS step_status
  FROM tasker.slowest_steps('2199-12-31 23:00:00+00', 1);
SELECT pg_typeof(task_name) AS task_name, pg_typeof(duration_seconds) AS duration_seconds,
       pg_typeof(step_count) AS step_count, pg_typeof(completed_at) AS completed_at,
       pg_typeof(initiator) AS initiator
  FROM tasker.slowest_tasks('2199-12-31 23:00:00+00', 1);

-- Bad input.
CALL slw_test.expect_error($$SELECT * FROM tasker.slowest_steps(limit_count => 0)$$);
CALL slw_test.expect_error($$SELECT * FROM tasker.slowest_tasks(limit_count => NULL)$$);
CALL slw_test.expect_error($$SELECT * FROM tasker.slowest_steps(namespace_filter => 'no_such_namespace')$$);
CALL slw_test.expect_error($$SELECT * FROM tasker.slowest_tasks(NULL, 10, 'slw_test', 'etl', '3.0.0')$$);
