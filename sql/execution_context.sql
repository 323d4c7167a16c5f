--
-- execution_context: task_execution_context sums up a task's steps and says
-- what to do next.  execution_status, first that applies:
--   cancelled > has_ready_steps > processing > all_complete >
--   blocked_by_failures > waiting_for_dependencies
-- with recommended_action none / execute_ready_steps / wait_for_completion /
-- finalize_task / handle_failures / wait_for_dependencies, and
-- health_status healthy / recovering / blocked / unknown (cancelled).
--
-- Namespace: ctx_test.  Each template has its own queue; one task per
-- queue at a time.  Tasks are labelled by their reason.
--
\set SHOW_CONTEXT never
SET tasker.backoff_jitter = 0;

CREATE SCHEMA ctx_test;

CREATE PROCEDURE ctx_test.expect_error(statement text) LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
BEGIN
    BEGIN
        EXECUTE statement;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        RAISE NOTICE 'error %: %', state, regexp_replace(message, '\m(task|step) [0-9]+\M', '\1 #', 'g');
        RETURN;
    END;
    RAISE EXCEPTION 'expected an error from: %', statement;
END $$;

CREATE FUNCTION ctx_test.task(label text) RETURNS bigint LANGUAGE sql AS $$
    SELECT k.task_id FROM tasker.tasks k
      JOIN tasker.named_tasks t USING (named_task_id) JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = 'ctx_test' AND k.reason = label
$$;
CREATE FUNCTION ctx_test.step(label text, step_name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT workflow_step_id FROM tasker.workflow_steps
     WHERE task_id = ctx_test.task(label) AND name = step_name
$$;

-- work claims every ready step of a queue and reports each as outcomes
-- says: "complete" (default), "fail:N" (retryable, N seconds),
-- "fail!" (permanent), "hold" (left in progress).
CREATE FUNCTION ctx_test.work(queue text, outcomes jsonb DEFAULT '{}') RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    c record;
    outcome text;
    report text[] := '{}';
BEGIN
    FOR c IN SELECT * FROM tasker.claim_steps(queue, 'worker', 100) ORDER BY step_id LOOP
        outcome := coalesce(outcomes ->> c.step_name, 'complete');
        IF outcome = 'complete' THEN
            PERFORM tasker.complete_step(c.step_id, c.attempt, '{}');
        ELSIF outcome LIKE 'fail:%' THEN
            outcome := tasker.fail_step(c.step_id, c.attempt, '{}',
                                        backoff_seconds => split_part(outcome, ':', 2)::integer);
        ELSIF outcome = 'fail!' THEN
            outcome := tasker.fail_step(c.step_id, c.attempt, '{}', retryable => false);
        ELSE
            outcome := 'in_progress';
        END IF;
        report := report || format('%s %s', c.step_name, outcome);
    END LOOP;
    RETURN coalesce(nullif(array_to_string(report, ', '), ''), 'nothing claimed');
END $$;

-- context shows a task's context without ids.
CREATE FUNCTION ctx_test.context(label text)
    RETURNS TABLE (status text, total bigint, pending bigint, in_progress bigint, completed bigint,
                   failed bigint, ready bigint, retrying bigint, skipped bigint, cancelled bigint,
                   execution_status text, recommended_action text, percent numeric, health text)
    LANGUAGE sql AS $$
    SELECT c.status, c.total_steps, c.pending_steps, c.in_progress_steps, c.completed_steps,
           c.failed_steps, c.ready_steps, c.waiting_for_retry_steps, c.skipped_steps,
           c.cancelled_steps, c.execution_status, c.recommended_action, c.completion_percentage,
           c.health_status
      FROM tasker.task_execution_context(ctx_test.task(label)) c
$$;

-- a diamond: a -> (b, c) -> d
SELECT tasker.register_template('{
  "namespace": "ctx_test", "name": "diamond", "version": "1.0.0",
  "steps": [
    {"name": "a", "queue": "ctx_diamond"},
    {"name": "b", "queue": "ctx_diamond", "depends_on": ["a"]},
    {"name": "c", "queue": "ctx_diamond", "depends_on": ["a"]},
    {"name": "d", "queue": "ctx_diamond", "depends_on": ["b", "c"]}
  ]}') IS NOT NULL AS diamond;
-- a skippable step between two others: x -> y (skippable) -> z
SELECT tasker.register_template('{
  "namespace": "ctx_test", "name": "skip", "version": "1.0.0",
  "steps": [
    {"name": "x", "queue": "ctx_skip"},
    {"name": "y", "queue": "ctx_skip", "depends_on": ["x"], "skippable": true},
    {"name": "z", "queue": "ctx_skip", "depends_on": ["y"]}
  ]}') IS NOT NULL AS skip;
SELECT tasker.register_template('{"namespace": "ctx_test", "name": "empty", "version": "1.0.0",
                                  "steps": []}') IS NOT NULL AS empty;

---------------------------------------------------------------------------
-- One task through every execution_status.
SELECT tasker.create_task('ctx_test', 'diamond', reason => 'flow') IS NOT NULL AS created;
-- has_ready_steps: the root can run
SELECT * FROM ctx_test.context('flow');
-- processing: the root is claimed, nothing else can run
SELECT ctx_test.work('ctx_diamond', '{"a": "hold"}');
SELECT * FROM ctx_test.context('flow');
SELECT tasker.complete_step(ctx_test.step('flow', 'a'), 1);
-- b fails and will retry in a minute, c is held: processing, and recovering
SELECT ctx_test.work('ctx_diamond', '{"b": "fail:60", "c": "hold"}');
SELECT * FROM ctx_test.context('flow');
-- c completes: b waits out its delay, d waits for b
SELECT tasker.complete_step(ctx_test.step('flow', 'c'), 1);
SELECT * FROM ctx_test.context('flow');
-- the delay passes (moved to now): b can run again
UPDATE tasker.workflow_steps SET next_attempt_at = now() WHERE workflow_step_id = ctx_test.step('flow', 'b');
SELECT * FROM ctx_test.context('flow');
-- b fails for good: blocked_by_failures, and the task is in error
SELECT ctx_test.work('ctx_diamond', '{"b": "fail!"}');
SELECT * FROM ctx_test.context('flow');
-- an operator resolves b: d can run, healthy again
SELECT tasker.resolve_step(ctx_test.step('flow', 'b'), '{}', 'by hand');
SELECT * FROM ctx_test.context('flow');
-- all_complete
SELECT ctx_test.work('ctx_diamond');
SELECT * FROM ctx_test.context('flow');

---------------------------------------------------------------------------
-- A failure while another branch still runs: recovering until the branch
-- is done, then blocked.
SELECT tasker.create_task('ctx_test', 'diamond', reason => 'branch') IS NOT NULL AS created;
SELECT ctx_test.work('ctx_diamond');
SELECT ctx_test.work('ctx_diamond', '{"b": "fail!", "c": "hold"}');
SELECT * FROM ctx_test.context('branch');
SELECT tasker.complete_step(ctx_test.step('branch', 'c'), 1);
SELECT * FROM ctx_test.context('branch');

-- cancelled: nothing to do
SELECT tasker.cancel_task(ctx_test.task('branch'), 'no longer needed');
SELECT * FROM ctx_test.context('branch');

---------------------------------------------------------------------------
-- A skipped step counts toward completion.
SELECT tasker.create_task('ctx_test', 'skip', reason => 'skip') IS NOT NULL AS created;
SELECT ctx_test.work('ctx_skip');
SELECT ctx_test.work('ctx_skip', '{"y": "fail!"}');
SELECT * FROM ctx_test.context('skip');
SELECT ctx_test.work('ctx_skip');
SELECT * FROM ctx_test.context('skip');

-- Bypassed steps count as completed.
SELECT tasker.create_task('ctx_test', 'skip', reason => 'bypass', bypass_steps => '{x}') IS NOT NULL AS created;
SELECT * FROM ctx_test.context('bypass');

-- A task without steps is complete at once.
SELECT tasker.create_task('ctx_test', 'empty', reason => 'empty') IS NOT NULL AS created;
SELECT * FROM ctx_test.context('empty');

---------------------------------------------------------------------------
-- The batch form: one row per task, in task order (duplicates once).
SELECT k.reason, c.execution_status, c.health_status, c.completion_percentage
  FROM tasker.task_execution_contexts(ARRAY[ctx_test.task('skip'), ctx_test.task('flow'),
                                            ctx_test.task('empty'), ctx_test.task('flow'),
                                            ctx_test.task('bypass')]) WITH ORDINALITY c
  JOIN tasker.tasks k ON k.task_id = c.task_id
 ORDER BY c.ordinality;
SELECT count(*) FROM tasker.task_execution_contexts('{}');
-- named_task_id and status are the task's own
SELECT c.named_task_id = k.named_task_id AS same_template, c.status = k.current_state AS same_state
  FROM tasker.task_execution_context(ctx_test.task('flow')) c
  JOIN tasker.tasks k ON k.task_id = c.task_id;

-- Bad input.
CALL ctx_test.expect_error('SELECT * FROM tasker.task_execution_context(NULL)');
CALL ctx_test.expect_error('SELECT * FROM tasker.task_execution_context(-1)');
CALL ctx_test.expect_error('SELECT * FROM tasker.task_execution_contexts(NULL)');
CALL ctx_test.expect_error('SELECT * FROM tasker.task_execution_contexts(ARRAY[NULL::bigint])');
CALL ctx_test.expect_error($$SELECT * FROM tasker.task_execution_contexts(ARRAY[ctx_test.task('flow'), -7])$$);
