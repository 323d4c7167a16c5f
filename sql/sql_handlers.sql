-- In-database steps: SQL handlers run by tasker's background workers.
-- The instance preloads tasker, so each database with the extension has a
-- dispatcher that starts executors when SQL-handler steps become ready.
SET client_min_messages = warning;
CREATE SCHEMA sqlh;
CREATE TABLE sqlh.writes (step text, attempt int, run_as text);

-- A handler is a function (jsonb) RETURNS jsonb; it receives the same input
-- document an external worker gets from claim_steps.
CREATE FUNCTION sqlh.write_row(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sqlh.writes VALUES (input->>'step_name', (input->>'attempt')::int, current_user);
    RETURN jsonb_build_object('written', true, 'order', input #> '{context,order_id}');
END $$;

-- Fails on its first two attempts (after writing a row: the row must vanish
-- with the failed attempt), then succeeds.  retry_after(0) asks for no backoff.
CREATE FUNCTION sqlh.flaky(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sqlh.writes VALUES (input->>'step_name', (input->>'attempt')::int, current_user);
    IF (input->>'attempt')::int < 3 THEN
        PERFORM tasker.retry_after(0, 'flaky attempt ' || (input->>'attempt'));
    END IF;
    RETURN jsonb_build_object('parent_saw', input #> '{dependencies,write}');
END $$;

-- SQLSTATE TK001 is a permanent failure: no retry even though attempts remain.
CREATE FUNCTION sqlh.refuse(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'card declined' USING ERRCODE = 'TK001', DETAIL = 'issuer said no', HINT = 'ask for another card';
END $$;

-- An ordinary error: retryable until the attempts run out.
CREATE FUNCTION sqlh.broken(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'optional service is down';
END $$;

CREATE FUNCTION sqlh.noop(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;

CREATE FUNCTION sqlh.sleeper(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(30);
    RETURN '{}';
END $$;

-- wait_for_task polls (bounded: 60 s) until the task is finished.
CREATE FUNCTION sqlh.wait_for_task(t bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
BEGIN
    FOR i IN 1..600 LOOP
        SELECT current_state INTO state FROM tasker.tasks WHERE task_id = t;
        EXIT WHEN state IN ('complete', 'error', 'cancelled', 'resolved_manually');
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN state;
END $$;

SELECT tasker.register_template($$ {
  "namespace": "sqlh_test", "name": "mixed_bag", "version": "1.0.0",
  "steps": [
    {"name": "write",      "handler": "sqlh.write_row"},
    {"name": "flaky",      "handler": "sqlh.flaky", "depends_on": ["write"], "max_attempts": 3},
    {"name": "refuse",     "handler": "sqlh.refuse", "max_attempts": 5},
    {"name": "optional",   "handler": "sqlh.broken", "max_attempts": 1, "skippable": true},
    {"name": "after_skip", "handler": "sqlh.noop", "depends_on": ["optional"]},
    {"name": "slow",       "handler": "sqlh.sleeper", "timeout": 0.5, "max_attempts": 1}
  ]} $$) > 0 AS registered;

SELECT tasker.create_task('sqlh_test', 'mixed_bag', context => '{"order_id": 7}') AS task \gset

-- Every step ends where its handler sends it; the task ends in error because
-- "refuse" and "slow" failed for good and nothing else can run.
SELECT sqlh.wait_for_task(:task) AS task_state;
SELECT name, current_state, attempts, results,
       error->>'sqlstate' AS sqlstate, error->>'message' AS message,
       error->>'detail' AS detail, error->>'hint' AS hint
  FROM tasker.workflow_steps WHERE task_id = :task ORDER BY name;

-- Exactly once: the failed attempts of "flaky" wrote rows that rolled back
-- with them; only the attempt that completed left its row.  Handlers ran as
-- the role that registered the template.
SELECT step, attempt, run_as = current_user AS ran_as_registering_role
  FROM sqlh.writes ORDER BY step, attempt;

-- The transition log records each attempt of "flaky" and why it failed.
SELECT sort_key, from_state, to_state, metadata->'error'->>'sqlstate' AS sqlstate,
       metadata->'error'->>'message' AS message
  FROM tasker.step_transitions(:task) WHERE step_name = 'flaky' ORDER BY sort_key;

-- A handler registered by an unprivileged role runs as that role (a
-- submitter of the namespace: doc/security.md).
CREATE ROLE sqlh_submitter;
SELECT tasker.grant_submitter('sqlh_submitter', 'sqlh_test');
GRANT USAGE ON SCHEMA sqlh TO sqlh_submitter;
GRANT INSERT ON sqlh.writes TO sqlh_submitter;
SET ROLE sqlh_submitter;
SELECT tasker.register_template($$ {
  "namespace": "sqlh_test", "name": "as_role",
  "steps": [{"name": "write", "handler": "sqlh.write_row"}]} $$) > 0 AS registered;
RESET ROLE;
SELECT tasker.create_task('sqlh_test', 'as_role') AS task2 \gset
SELECT sqlh.wait_for_task(:task2) AS task_state;
SELECT step, run_as FROM sqlh.writes WHERE run_as <> current_user;

-- The workers are visible to operators.
SELECT kind, count(*) > 0 AS running FROM tasker.workers
 WHERE kind IN ('launcher', 'dispatcher') GROUP BY kind ORDER BY kind;
SELECT count(*) AS named_in_pg_stat_activity FROM pg_stat_activity
 WHERE backend_type IN ('tasker launcher', 'tasker dispatcher')
   AND application_name = backend_type;

DROP SCHEMA sqlh CASCADE;
