--
-- state_machine: the task and step state machines, the audit trail, and
-- how a task's state follows from its steps.
--
-- The legal moves are a table in C; a trigger checks every change of
-- current_state against it, whoever makes the change.  Every move made
-- through the API also appends a transition row (from, to, ordinal,
-- metadata).  Namespace: sm_test.
--
\set SHOW_CONTEXT never
-- Backoff without jitter, so that retry delays are exact.
SET tasker.backoff_jitter = 0;
SET tasker.backoff_base = 1;
SET tasker.backoff_multiplier = 2;
SET tasker.max_backoff = 300;

CREATE SCHEMA sm_test;

-- Tasks in this file are labelled by their reason; these look them up.
CREATE FUNCTION sm_test.task(label text) RETURNS bigint LANGUAGE sql AS $$
    SELECT k.task_id FROM tasker.tasks k
      JOIN tasker.named_tasks t USING (named_task_id) JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = 'sm_test' AND k.reason = label
$$;
CREATE FUNCTION sm_test.step(label text, step_name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT workflow_step_id FROM tasker.workflow_steps
     WHERE task_id = sm_test.task(label) AND name = step_name
$$;
-- states shows a task's state and its steps', in one line.
CREATE FUNCTION sm_test.states(label text) RETURNS text LANGUAGE sql AS $$
    SELECT format('task %s: %s', k.current_state,
                  coalesce((SELECT string_agg(format('%s %s', s.name, s.current_state), ', '
                                              ORDER BY s.workflow_step_id)
                              FROM tasker.workflow_steps s WHERE s.task_id = k.task_id), 'no steps'))
      FROM tasker.tasks k WHERE k.task_id = sm_test.task(label)
$$;

--------------------------------------------------------------------------
-- The legal moves.
--------------------------------------------------------------------------
-- tasker.state_machine() lists the table the C code checks.  complete,
-- cancelled and resolved_manually are final: nothing leaves them.  A
-- step's error is permanent until an operator retries or resolves it.
SELECT machine, from_state, string_agg(to_state, ', ' ORDER BY to_state) AS may_move_to
  FROM tasker.state_machine()
 GROUP BY machine, from_state
 ORDER BY machine DESC, array_position(ARRAY['pending', 'in_progress', 'waiting_for_retry', 'complete',
                                              'error', 'cancelled', 'resolved_manually'], from_state);

SELECT m.machine, string_agg(s.state, ', ' ORDER BY s.state) AS final_states
  FROM (VALUES ('task'), ('step')) AS m(machine),
       unnest(ARRAY['pending', 'in_progress', 'waiting_for_retry', 'complete', 'error', 'cancelled',
                    'resolved_manually']) AS s(state)
 WHERE (m.machine = 'step' OR s.state <> 'waiting_for_retry')
   AND NOT EXISTS (SELECT 1 FROM tasker.state_machine() t
                    WHERE t.machine = m.machine AND t.from_state = s.state)
 GROUP BY m.machine ORDER BY m.machine DESC;

--------------------------------------------------------------------------
-- Every change of current_state is checked, even a hand-written UPDATE.
--------------------------------------------------------------------------
SELECT tasker.register_template('{"namespace": "sm_test", "name": "pair",
    "steps": [{"name": "first"}, {"name": "second", "depends_on": "first"}]}') > 0 AS registered;
SELECT tasker.register_template('{"namespace": "sm_test", "name": "empty"}') > 0 AS registered;
SELECT tasker.create_task('sm_test', 'pair', reason => 'by hand') > 0 AS created;
SELECT tasker.create_task('sm_test', 'empty', reason => 'done at once') > 0 AS created;
SELECT sm_test.states('by hand'), sm_test.states('done at once');

-- A step cannot complete without running, nor wait for a retry it never
-- failed; a finished task cannot start again.  The error names both states.
CALL expect_error($$ UPDATE tasker.workflow_steps SET current_state = 'complete'
                              WHERE workflow_step_id = sm_test.step('by hand', 'first') $$);
CALL expect_error($$ UPDATE tasker.workflow_steps SET current_state = 'waiting_for_retry'
                              WHERE workflow_step_id = sm_test.step('by hand', 'second') $$);
CALL expect_error($$ UPDATE tasker.tasks SET current_state = 'pending'
                              WHERE task_id = sm_test.task('done at once') $$);
CALL expect_error($$ UPDATE tasker.tasks SET current_state = 'in_progress'
                              WHERE task_id = sm_test.task('done at once') $$);
-- A state that does not exist.
CALL expect_error($$ UPDATE tasker.workflow_steps SET current_state = 'done'
                              WHERE workflow_step_id = sm_test.step('by hand', 'first') $$);
CALL expect_error($$ UPDATE tasker.tasks SET current_state = 'waiting_for_retry'
                              WHERE task_id = sm_test.task('by hand') $$);
-- Nothing moved.
SELECT sm_test.states('by hand'), sm_test.states('done at once');

-- A legal move passes the check (rolled back here: a hand-written UPDATE
-- writes no transition row, the API functions do).
BEGIN;
UPDATE tasker.workflow_steps SET current_state = 'cancelled'
 WHERE workflow_step_id = sm_test.step('by hand', 'second');
SELECT sm_test.states('by hand');
ROLLBACK;
SELECT tasker.cancel_task(sm_test.task('by hand')) AS cancelled_steps;

--------------------------------------------------------------------------
-- A step's life, and the audit trail.
--------------------------------------------------------------------------
-- fetch fails once and succeeds on its second attempt; then store runs.
SELECT tasker.register_template('{"namespace": "sm_test", "name": "life",
    "steps": [{"name": "fetch"}, {"name": "store", "depends_on": "fetch"}]}') > 0 AS registered;
SELECT tasker.create_task('sm_test', 'life', reason => 'life') > 0 AS created;

-- A claim moves the step to in_progress (attempt 1) and the task with it.
SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1');
SELECT sm_test.states('life');

-- A retryable failure: waiting_for_retry, until next_attempt_at.  Here the
-- worker asks for no delay (backoff_seconds => 0), so it is due at once.
SELECT tasker.fail_step(sm_test.step('life', 'fetch'), 1, '{"message": "connection reset"}',
                        backoff_seconds => 0);
SELECT sm_test.states('life');
SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-2');

-- Attempts fence workers: the first worker, whose attempt is stale, can
-- neither complete nor fail the step; the second one can.
SELECT tasker.complete_step(sm_test.step('life', 'fetch'), 1, '{"rows": 1}') AS stale_complete;
SELECT tasker.fail_step(sm_test.step('life', 'fetch'), 1) AS stale_fail;
SELECT tasker.complete_step(sm_test.step('life', 'fetch'), 2, '{"rows": 10}') AS completed;
SELECT sm_test.states('life');

SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1');
SELECT tasker.complete_step(sm_test.step('life', 'store'), 1) AS completed;
-- All steps done: the task is complete.
SELECT sm_test.states('life');

-- The audit trail: one row per move, numbered per step (sort_key), with
-- what the move was about (next_attempt_at, a timestamp, is left out here).
SELECT step_name, sort_key, from_state, to_state, metadata - 'next_attempt_at' AS metadata,
       metadata ? 'next_attempt_at' AS has_next_attempt_at
  FROM tasker.step_transitions(sm_test.task('life'));
SELECT sort_key, from_state, to_state, metadata FROM tasker.task_history(sm_test.task('life'));
-- The ordinals match the rows' transition counters.
SELECT t.transitions AS task_transitions,
       (SELECT max(sort_key) FROM tasker.task_transitions tt WHERE tt.task_id = t.task_id) AS last_sort_key
  FROM tasker.tasks t WHERE t.task_id = sm_test.task('life');

--------------------------------------------------------------------------
-- Backoff.
--------------------------------------------------------------------------
-- Without a request, a failure waits min(backoff_base * backoff_multiplier
-- ^ attempts, max_backoff) seconds (plus jitter, off here); a request wins.
SELECT n AS attempts, tasker.backoff_seconds(n) AS computed, tasker.backoff_seconds(n, 7) AS requested
  FROM generate_series(1, 4) n
UNION ALL
SELECT 10, tasker.backoff_seconds(10), tasker.backoff_seconds(10, 7);

-- A step that fails after its first attempt, with a 30 second base: it
-- waits 30 * 2 ^ 1 = 60 seconds.
SET tasker.backoff_base = 30;
SELECT tasker.register_template('{"namespace": "sm_test", "name": "backoff",
    "steps": [{"name": "call", "max_attempts": 5}]}') > 0 AS registered;
SELECT tasker.create_task('sm_test', 'backoff', reason => 'backoff') > 0 AS created;
SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1');
SELECT tasker.fail_step(sm_test.step('backoff', 'call'), 1, '{"message": "busy"}');
-- The delay is fixed when the failure is recorded.
SELECT current_state, attempts, next_attempt_at - last_failure_at AS delay
  FROM tasker.workflow_steps WHERE workflow_step_id = sm_test.step('backoff', 'call');
-- Until then the step is not ready.
SELECT count(*) AS claimed FROM tasker.claim_steps('sm_test', 'worker-1');
SELECT tasker.cancel_task(sm_test.task('backoff')) AS cancelled_steps;
SELECT sm_test.states('backoff');
RESET tasker.backoff_base;

--------------------------------------------------------------------------
-- Permanent failures.
--------------------------------------------------------------------------
-- A step fails for good (error) when its attempts are used up, when it is
-- not retryable, or when the worker says the failure is permanent.
SELECT tasker.register_template('{"namespace": "sm_test", "name": "failing", "steps": [
    {"name": "twice", "max_attempts": 2},
    {"name": "once", "retryable": false},
    {"name": "refused"}]}') > 0 AS registered;
SELECT tasker.create_task('sm_test', 'failing', reason => 'failing') > 0 AS created;
SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT tasker.fail_step(sm_test.step('failing', 'twice'), 1, backoff_seconds => 0) AS twice,
       tasker.fail_step(sm_test.step('failing', 'once'), 1) AS once,
       tasker.fail_step(sm_test.step('failing', 'refused'), 1, '{"message": "card declined"}',
                        retryable => false) AS refused;
SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT tasker.fail_step(sm_test.step('failing', 'twice'), 2, backoff_seconds => 0) AS twice;
SELECT name, current_state, attempts, max_attempts, error
  FROM tasker.workflow_steps WHERE task_id = sm_test.task('failing') ORDER BY workflow_step_id;
-- Nothing left to run: the task is in error.
SELECT sm_test.states('failing');
SELECT sort_key, from_state, to_state, metadata FROM tasker.task_history(sm_test.task('failing'));

--------------------------------------------------------------------------
-- Task finalization.
--------------------------------------------------------------------------
-- The reference diamond: start, two independent two-step branches, a merge
-- and an end.  When branch one fails for good, branch two still runs to the
-- end of what it can do; only then is the task in error.
SELECT tasker.register_template($${
  "namespace": "sm_test", "name": "diamond_workflow", "version": "1.0.0",
  "steps": [
    {"name": "start_workflow"},
    {"name": "branch_one_process", "depends_on": ["start_workflow"]},
    {"name": "branch_two_process", "depends_on": ["start_workflow"]},
    {"name": "branch_one_validate", "depends_on": ["branch_one_process"]},
    {"name": "branch_two_validate", "depends_on": ["branch_two_process"]},
    {"name": "merge_branches", "depends_on": ["branch_one_validate", "branch_two_validate"]},
    {"name": "end_workflow", "depends_on": ["merge_branches"]}
  ]}$$) > 0 AS registered;
SELECT tasker.create_task('sm_test', 'diamond_workflow', reason => 'diamond') > 0 AS created;

SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT tasker.complete_step(sm_test.step('diamond', 'start_workflow'), 1) AS completed;
SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT tasker.fail_step(sm_test.step('diamond', 'branch_one_process'), 1, '{"message": "bad data"}',
                        retryable => false);
-- branch two is still running: the task too.
SELECT current_state FROM tasker.tasks WHERE task_id = sm_test.task('diamond');
SELECT tasker.complete_step(sm_test.step('diamond', 'branch_two_process'), 1) AS completed;
SELECT step_name, attempt FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT current_state FROM tasker.tasks WHERE task_id = sm_test.task('diamond');
SELECT tasker.complete_step(sm_test.step('diamond', 'branch_two_validate'), 1) AS completed;
-- Now nothing can run: merge_branches waits for branch one forever.
SELECT name, current_state, pending_parents
  FROM tasker.workflow_steps WHERE task_id = sm_test.task('diamond') ORDER BY workflow_step_id;
SELECT sort_key, from_state, to_state, metadata FROM tasker.task_history(sm_test.task('diamond'));

-- A skippable step that fails for good counts as done for its children
-- (the transition says it was skipped), and the task completes without it.
SELECT tasker.register_template('{"namespace": "sm_test", "name": "optional", "steps": [
    {"name": "load"},
    {"name": "enrich", "depends_on": "load", "skippable": true, "retryable": false},
    {"name": "save", "depends_on": "enrich"}]}') > 0 AS registered;
SELECT tasker.create_task('sm_test', 'optional', reason => 'optional') > 0 AS created;
SELECT step_name FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT tasker.complete_step(sm_test.step('optional', 'load'), 1) AS completed;
SELECT step_name FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT tasker.fail_step(sm_test.step('optional', 'enrich'), 1, '{"message": "service down"}');
SELECT step_name, sort_key, from_state, to_state, metadata
  FROM tasker.step_transitions(sm_test.task('optional'))
 WHERE step_name = 'enrich';
SELECT step_name, attempt, input -> 'dependencies' AS dependencies
  FROM tasker.claim_steps('sm_test', 'worker-1', 10);
SELECT tasker.complete_step(sm_test.step('optional', 'save'), 1) AS completed;
SELECT sm_test.states('optional');
SELECT sort_key, from_state, to_state, metadata FROM tasker.task_history(sm_test.task('optional'));

-- (A task with no steps, or with every step bypassed, completes when it is
-- created: see the tasks test.)
