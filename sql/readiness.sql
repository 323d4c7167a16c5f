--
-- readiness: step_readiness_status recomputes, from a task's edges and its
-- parents' states, which steps are ready — and names exactly the steps
-- claim_steps would claim.  The reference shapes of the Rails engine's test
-- suite (linear, diamond, tree, mixed), with failures, backoff, exhausted
-- retries, manual resolution, skipped and bypassed steps.
--
-- Namespace and queue: rdy_test.  Tasks are labelled by their reason; one
-- task at a time has steps on the queue.  Ids depend on the tests run before
-- this one: nothing below shows them, and errors show them as #.
--
\set SHOW_CONTEXT never
SET tasker.backoff_jitter = 0;        -- deterministic retry delays
SET tasker.backoff_base = 1;          -- delay = min(1 s * 2 ^ attempts, 300 s)
SET tasker.backoff_multiplier = 2;
SET tasker.max_backoff = 300;

CREATE SCHEMA rdy_test;

-- expect_error runs a statement that must fail and shows SQLSTATE and
-- message (ids as #) as a notice.
CREATE PROCEDURE rdy_test.expect_error(statement text) LANGUAGE plpgsql AS $$
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

CREATE FUNCTION rdy_test.task(label text) RETURNS bigint LANGUAGE sql AS $$
    SELECT k.task_id FROM tasker.tasks k
      JOIN tasker.named_tasks t USING (named_task_id) JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = 'rdy_test' AND k.reason = label
$$;
CREATE FUNCTION rdy_test.step(label text, step_name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT workflow_step_id FROM tasker.workflow_steps
     WHERE task_id = rdy_test.task(label) AND name = step_name
$$;

-- ready: the steps step_readiness_status calls ready, in id order.
CREATE FUNCTION rdy_test.ready(label text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(name, ', ' ORDER BY workflow_step_id), '-')
      FROM tasker.step_readiness_status(rdy_test.task(label)) WHERE ready_for_execution
$$;

-- claimable: the steps of the task that claim_steps actually claims, in a
-- subtransaction that is rolled back (nothing changes).
CREATE FUNCTION rdy_test.claimable(label text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    claimed text;
BEGIN
    BEGIN
        SELECT coalesce(string_agg(c.step_name, ', ' ORDER BY c.step_id), '-') INTO claimed
          FROM tasker.claim_steps('rdy_test', 'probe', 10000) c
         WHERE c.task_id = rdy_test.task(label);
        RAISE EXCEPTION USING ERRCODE = 'TKRB0', MESSAGE = 'roll back the probe';
    EXCEPTION WHEN SQLSTATE 'TKRB0' THEN
        RETURN claimed;
    END;
END $$;

-- ready_now shows both, and says whether they agree.
CREATE FUNCTION rdy_test.ready_now(label text, OUT ready text, OUT claim_agrees boolean)
    LANGUAGE sql AS $$
    SELECT rdy_test.ready(label), rdy_test.ready(label) = rdy_test.claimable(label)
$$;

-- work claims every ready step of the queue (they must all belong to the
-- task) and reports each as outcomes says: "complete" (the default),
-- "fail" (retryable, computed delay), "fail:N" (retryable, N seconds),
-- "fail!" (permanent), "hold" (left in progress).  Returns what happened.
CREATE FUNCTION rdy_test.work(label text, outcomes jsonb DEFAULT '{}') RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    c record;
    outcome text;
    result text;
    report text[] := '{}';
BEGIN
    FOR c IN SELECT * FROM tasker.claim_steps('rdy_test', 'worker', 100) ORDER BY step_id LOOP
        IF c.task_id <> rdy_test.task(label) THEN
            RAISE EXCEPTION 'claimed step % of another task', c.step_name;
        END IF;
        outcome := coalesce(outcomes ->> c.step_name, 'complete');
        IF outcome = 'complete' THEN
            PERFORM tasker.complete_step(c.step_id, c.attempt, jsonb_build_object('by', c.step_name));
            result := 'complete';
        ELSIF outcome = 'fail' THEN
            result := tasker.fail_step(c.step_id, c.attempt, '{"message": "boom"}');
        ELSIF outcome LIKE 'fail:%' THEN
            result := tasker.fail_step(c.step_id, c.attempt, '{"message": "boom"}',
                                       backoff_seconds => split_part(outcome, ':', 2)::integer);
        ELSIF outcome = 'fail!' THEN
            result := tasker.fail_step(c.step_id, c.attempt, '{"message": "fatal"}', retryable => false);
        ELSE
            result := 'in_progress';
        END IF;
        report := report || format('%s#%s %s', c.step_name, c.attempt, result);
    END LOOP;
    RETURN coalesce(nullif(array_to_string(report, ', '), ''), 'nothing claimed');
END $$;

-- walk alternates ready_now and work until nothing is claimed.
CREATE FUNCTION rdy_test.walk(label text)
    RETURNS TABLE (round integer, ready text, claim_agrees boolean, worked text)
    LANGUAGE plpgsql AS $$
BEGIN
    round := 0;
    LOOP
        round := round + 1;
        SELECT r.ready, r.claim_agrees INTO ready, claim_agrees FROM rdy_test.ready_now(label) r;
        worked := rdy_test.work(label);
        RETURN NEXT;
        EXIT WHEN worked = 'nothing claimed' OR round > 50;
    END LOOP;
END $$;

-- show is the readiness table of a task, without ids or raw timestamps
-- (retry_delay is next_retry_at - last_failure_at).
CREATE FUNCTION rdy_test.show(label text)
    RETURNS TABLE (name text, state text, deps boolean, eligible boolean, ready boolean,
                   parents text, attempts integer, retry_limit integer, backoff integer,
                   retry_delay interval)
    LANGUAGE sql AS $$
    SELECT r.name, r.current_state, r.dependencies_satisfied, r.retry_eligible,
           r.ready_for_execution, r.completed_parents || '/' || r.total_parents, r.attempts,
           r.retry_limit, r.backoff_request_seconds, r.next_retry_at - r.last_failure_at
      FROM tasker.step_readiness_status(rdy_test.task(label)) r
     ORDER BY r.workflow_step_id
$$;

-- The reference shapes (/work/shared/workflows), in this file's namespace.
-- Changes for this test: in diamond, branch_one_process may be attempted
-- twice; in mixed, cleanup_temp_files is skippable and not retryable.
SELECT tasker.register_template('{
  "namespace": "rdy_test", "name": "linear_workflow", "version": "1.0.0",
  "steps": [
    {"name": "initialize_data"},
    {"name": "validate_input", "depends_on": ["initialize_data"]},
    {"name": "process_data", "depends_on": ["validate_input"]},
    {"name": "transform_results", "depends_on": ["process_data"]},
    {"name": "validate_output", "depends_on": ["transform_results"]},
    {"name": "finalize_workflow", "depends_on": ["validate_output"]}
  ]}') IS NOT NULL AS linear;
SELECT tasker.register_template('{
  "namespace": "rdy_test", "name": "diamond_workflow", "version": "1.0.0",
  "steps": [
    {"name": "start_workflow"},
    {"name": "branch_one_process", "depends_on": ["start_workflow"], "max_attempts": 2},
    {"name": "branch_two_process", "depends_on": ["start_workflow"]},
    {"name": "branch_one_validate", "depends_on": ["branch_one_process"]},
    {"name": "branch_two_validate", "depends_on": ["branch_two_process"]},
    {"name": "merge_branches", "depends_on": ["branch_one_validate", "branch_two_validate"]},
    {"name": "end_workflow", "depends_on": ["merge_branches"]}
  ]}') IS NOT NULL AS diamond;
SELECT tasker.register_template('{
  "namespace": "rdy_test", "name": "tree_workflow", "version": "1.0.0",
  "steps": [
    {"name": "root_initialization"},
    {"name": "branch_a_setup", "depends_on": ["root_initialization"]},
    {"name": "branch_b_setup", "depends_on": ["root_initialization"]},
    {"name": "branch_a_task_one", "depends_on": ["branch_a_setup"]},
    {"name": "branch_a_task_two", "depends_on": ["branch_a_setup"]},
    {"name": "branch_b_task_one", "depends_on": ["branch_b_setup"]},
    {"name": "branch_b_task_two", "depends_on": ["branch_b_setup"]},
    {"name": "aggregate_results", "depends_on": ["branch_a_task_one", "branch_a_task_two",
                                                 "branch_b_task_one", "branch_b_task_two"]}
  ]}') IS NOT NULL AS tree;
SELECT tasker.register_template('{
  "namespace": "rdy_test", "name": "mixed_workflow", "version": "1.0.0",
  "steps": [
    {"name": "init_auth"},
    {"name": "init_config"},
    {"name": "validate_permissions", "depends_on": ["init_auth"]},
    {"name": "setup_environment", "depends_on": ["init_config"]},
    {"name": "begin_processing", "depends_on": ["validate_permissions", "setup_environment"]},
    {"name": "process_critical_data", "depends_on": ["begin_processing"]},
    {"name": "process_optional_data", "depends_on": ["begin_processing"]},
    {"name": "cleanup_temp_files", "depends_on": ["setup_environment"],
     "skippable": true, "retryable": false},
    {"name": "finalize_and_report", "depends_on": ["process_critical_data", "cleanup_temp_files"]}
  ]}') IS NOT NULL AS mixed;

---------------------------------------------------------------------------
-- Diamond: only the root is ready at first.
SELECT tasker.create_task('rdy_test', 'diamond_workflow', reason => 'diamond') IS NOT NULL AS created;
SELECT * FROM rdy_test.show('diamond');
SELECT * FROM rdy_test.ready_now('diamond');

-- A step in progress is not ready, and neither are its children.
SELECT rdy_test.work('diamond', '{"start_workflow": "hold"}');
SELECT * FROM rdy_test.ready_now('diamond');
SELECT tasker.complete_step(rdy_test.step('diamond', 'start_workflow'), 1);
-- Children after their parent: both branches now.
SELECT * FROM rdy_test.ready_now('diamond');

-- A retryable failure: waiting_for_retry, next_retry_at = failure + 1 s * 2^1.
SELECT rdy_test.work('diamond', '{"branch_one_process": "fail"}');
SELECT * FROM rdy_test.show('diamond');
SELECT * FROM rdy_test.ready_now('diamond');
-- The delay has not passed: the step is eligible but not ready.
SELECT name, state, eligible, ready, retry_delay FROM rdy_test.show('diamond')
 WHERE name = 'branch_one_process';
-- next_retry_at is a timestamptz: the same instant in any session TimeZone.
SET TimeZone = 'Asia/Kolkata';
SELECT next_retry_at - last_failure_at AS delay, next_retry_at > now() AS in_future
  FROM tasker.step_readiness_status(rdy_test.task('diamond'))
 WHERE name = 'branch_one_process';
SET TimeZone = 'America/Los_Angeles';
SELECT next_retry_at - last_failure_at AS delay, next_retry_at > now() AS in_future
  FROM tasker.step_readiness_status(rdy_test.task('diamond'))
 WHERE name = 'branch_one_process';
RESET TimeZone;

-- Time passes: the retry comes due (the test moves next_attempt_at to now
-- rather than sleeping), and the step is ready again.
UPDATE tasker.workflow_steps SET next_attempt_at = now()
 WHERE workflow_step_id = rdy_test.step('diamond', 'branch_one_process');
SELECT * FROM rdy_test.ready_now('diamond');

-- Its second and last attempt (max_attempts 2) fails: exhausted, error.
SELECT rdy_test.work('diamond', '{"branch_one_process": "fail"}');
SELECT name, state, eligible, ready, attempts, retry_limit, retry_delay
  FROM rdy_test.show('diamond') WHERE name LIKE 'branch_one%';
-- Its child is not ready, nor the join: nothing can run, the task is in error.
SELECT name, state, deps, ready, parents FROM rdy_test.show('diamond')
 WHERE name IN ('branch_one_validate', 'merge_branches');
SELECT * FROM rdy_test.ready_now('diamond');
SELECT current_state FROM tasker.tasks WHERE task_id = rdy_test.task('diamond');

-- resolved_manually counts as done: the child of the resolved step runs.
SELECT tasker.resolve_step(rdy_test.step('diamond', 'branch_one_process'), '{"fixed": true}', 'by hand');
SELECT name, state, deps, ready, parents FROM rdy_test.show('diamond')
 WHERE name IN ('branch_one_process', 'branch_one_validate');
SELECT * FROM rdy_test.ready_now('diamond');
SELECT rdy_test.work('diamond');
SELECT * FROM rdy_test.ready_now('diamond');
SELECT rdy_test.work('diamond');
SELECT rdy_test.work('diamond');
SELECT * FROM rdy_test.ready_now('diamond');
SELECT current_state FROM tasker.tasks WHERE task_id = rdy_test.task('diamond');

---------------------------------------------------------------------------
-- Explicit and capped delays.  A request wins (and is shown as
-- backoff_request_seconds); the computed delay doubles per attempt and
-- stops at tasker.max_backoff.
SELECT tasker.create_task('rdy_test', 'linear_workflow', reason => 'delays') IS NOT NULL AS created;
SELECT rdy_test.work('delays', '{"initialize_data": "fail:30"}');
SELECT name, state, ready, attempts, backoff, retry_delay FROM rdy_test.show('delays')
 WHERE name = 'initialize_data';
UPDATE tasker.workflow_steps SET next_attempt_at = now()      -- time passes
 WHERE workflow_step_id = rdy_test.step('delays', 'initialize_data');
SELECT rdy_test.work('delays', '{"initialize_data": "fail"}');
-- attempt 2, no request: 1 s * 2^2
SELECT name, state, attempts, backoff, retry_delay FROM rdy_test.show('delays')
 WHERE name = 'initialize_data';
SET tasker.max_backoff = 3;
-- (an operator raises the retry limit, and time passes)
UPDATE tasker.workflow_steps SET max_attempts = 4, next_attempt_at = now()
 WHERE workflow_step_id = rdy_test.step('delays', 'initialize_data');
SELECT rdy_test.work('delays', '{"initialize_data": "fail"}');
-- attempt 3: 1 s * 2^3 = 8 s, capped at 3 s
SELECT name, state, attempts, retry_limit, retry_delay FROM rdy_test.show('delays')
 WHERE name = 'initialize_data';
RESET tasker.max_backoff;
SELECT tasker.cancel_task(rdy_test.task('delays'));
-- A cancelled step is not ready, and has no next retry.
SELECT name, state, ready, retry_delay FROM rdy_test.show('delays') WHERE name = 'initialize_data';

---------------------------------------------------------------------------
-- Linear: exactly one step ready at a time, each after its parent.
SELECT tasker.create_task('rdy_test', 'linear_workflow', reason => 'linear') IS NOT NULL AS created;
SELECT * FROM rdy_test.walk('linear');
SELECT current_state FROM tasker.tasks WHERE task_id = rdy_test.task('linear');

---------------------------------------------------------------------------
-- Tree: the join waits for all four leaves.
SELECT tasker.create_task('rdy_test', 'tree_workflow', reason => 'tree') IS NOT NULL AS created;
SELECT * FROM rdy_test.ready_now('tree');
SELECT rdy_test.work('tree');
SELECT * FROM rdy_test.ready_now('tree');
SELECT rdy_test.work('tree');
SELECT * FROM rdy_test.ready_now('tree');
-- three leaves done, one held: the join is not ready (3 of 4 parents)
SELECT rdy_test.work('tree', '{"branch_b_task_two": "hold"}');
SELECT name, state, deps, ready, parents FROM rdy_test.show('tree') WHERE name = 'aggregate_results';
SELECT * FROM rdy_test.ready_now('tree');
SELECT tasker.complete_step(rdy_test.step('tree', 'branch_b_task_two'), 1);
SELECT name, state, deps, ready, parents FROM rdy_test.show('tree') WHERE name = 'aggregate_results';
SELECT * FROM rdy_test.ready_now('tree');
SELECT rdy_test.work('tree');
SELECT current_state FROM tasker.tasks WHERE task_id = rdy_test.task('tree');

---------------------------------------------------------------------------
-- Mixed: two roots; a skippable step that fails for good counts as done
-- for its child.
SELECT tasker.create_task('rdy_test', 'mixed_workflow', reason => 'mixed') IS NOT NULL AS created;
SELECT * FROM rdy_test.ready_now('mixed');
SELECT rdy_test.work('mixed');
SELECT * FROM rdy_test.ready_now('mixed');
SELECT rdy_test.work('mixed');
SELECT * FROM rdy_test.ready_now('mixed');
-- cleanup_temp_files is not retryable: its failure is final, and skipped.
SELECT rdy_test.work('mixed', '{"cleanup_temp_files": "fail"}');
SELECT name, state, eligible, ready, attempts FROM rdy_test.show('mixed')
 WHERE name = 'cleanup_temp_files';
SELECT * FROM rdy_test.ready_now('mixed');
SELECT rdy_test.work('mixed');
-- finalize_and_report counts its skipped parent as done.
SELECT name, state, deps, ready, parents FROM rdy_test.show('mixed') WHERE name = 'finalize_and_report';
SELECT * FROM rdy_test.ready_now('mixed');
SELECT rdy_test.work('mixed');
SELECT current_state FROM tasker.tasks WHERE task_id = rdy_test.task('mixed');

-- Bypassed steps start resolved_manually and count as done.
SELECT tasker.create_task('rdy_test', 'mixed_workflow', reason => 'bypass',
                          bypass_steps => '{init_auth, validate_permissions}') IS NOT NULL AS created;
SELECT name, state, deps, ready, parents FROM rdy_test.show('bypass')
 WHERE name IN ('init_auth', 'validate_permissions', 'begin_processing', 'init_config');
SELECT * FROM rdy_test.ready_now('bypass');
SELECT tasker.cancel_task(rdy_test.task('bypass'));
SELECT * FROM rdy_test.ready_now('bypass');

---------------------------------------------------------------------------
-- Some steps only, and the batch form.
SELECT name, current_state, ready_for_execution
  FROM tasker.step_readiness_status(rdy_test.task('tree'),
                                    ARRAY[rdy_test.step('tree', 'aggregate_results'),
                                          rdy_test.step('tree', 'root_initialization')]);
SELECT name, current_state FROM tasker.step_readiness_status(rdy_test.task('tree'), '{}');
SELECT t.reason, count(*) AS steps, count(*) FILTER (WHERE b.ready_for_execution) AS ready,
       bool_and(b.task_id >= lag) AS ordered
  FROM (SELECT b.*, lag(b.task_id, 1, 0::bigint) OVER (ORDER BY ordinality) AS lag
          FROM tasker.step_readiness_status_batch(ARRAY[rdy_test.task('tree'), rdy_test.task('bypass'),
                                                        rdy_test.task('linear'), rdy_test.task('tree')])
               WITH ORDINALITY b) b
  JOIN tasker.tasks t ON t.task_id = b.task_id
 GROUP BY t.reason ORDER BY t.reason;
SELECT count(*) FROM tasker.step_readiness_status_batch('{}');

-- Bad input.
CALL rdy_test.expect_error('SELECT * FROM tasker.step_readiness_status(NULL)');
CALL rdy_test.expect_error('SELECT * FROM tasker.step_readiness_status(-1)');
CALL rdy_test.expect_error($$SELECT * FROM tasker.step_readiness_status(rdy_test.task('tree'), ARRAY[NULL::bigint])$$);
CALL rdy_test.expect_error($$SELECT * FROM tasker.step_readiness_status(rdy_test.task('tree'), ARRAY[rdy_test.step('linear', 'process_data')])$$);
CALL rdy_test.expect_error('SELECT * FROM tasker.step_readiness_status_batch(NULL)');
CALL rdy_test.expect_error('SELECT * FROM tasker.step_readiness_status_batch(ARRAY[1, NULL])');
CALL rdy_test.expect_error($$SELECT * FROM tasker.step_readiness_status_batch(ARRAY[rdy_test.task('tree'), -5])$$);
