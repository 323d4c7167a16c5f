--
-- admin_ops: the operator's moves — cancel_task, resolve_step, retry_step,
-- retry_task — and what each refuses.
--
-- Namespace: adm_test.  Tasks are labelled by their reason.  Refusals name
-- the task or step by id; ids depend on the tests run before this one, so
-- the notices below show them as #.
--
\set SHOW_CONTEXT never

CREATE SCHEMA adm_test;

-- expect_error runs a statement that must fail and shows its error as a
-- notice: SQLSTATE, message (task and step ids shown as #), detail and
-- hint.  The statement runs in a subtransaction, so whatever it wrote is
-- rolled back.
CREATE PROCEDURE adm_test.expect_error(statement text)
    LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
BEGIN
    BEGIN
        EXECUTE statement;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                                detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
        message := format('error %s: %s', state,
                          regexp_replace(message, '\m(task|step) [0-9]+\M', '\1 #', 'g'));
        IF detail <> '' AND hint <> '' THEN
            RAISE NOTICE '%', message USING DETAIL = detail, HINT = hint;
        ELSIF detail <> '' THEN
            RAISE NOTICE '%', message USING DETAIL = detail;
        ELSIF hint <> '' THEN
            RAISE NOTICE '%', message USING HINT = hint;
        ELSE
            RAISE NOTICE '%', message;
        END IF;
        RETURN;
    END;
    RAISE EXCEPTION 'expected an error from: %', statement;
END $$;

-- task and step find this file's tasks by label (their reason).
CREATE FUNCTION adm_test.task(label text) RETURNS bigint LANGUAGE sql AS $$
    SELECT k.task_id FROM tasker.tasks k
      JOIN tasker.named_tasks t USING (named_task_id) JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = 'adm_test' AND k.reason = label
$$;
CREATE FUNCTION adm_test.step(label text, step_name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT workflow_step_id FROM tasker.workflow_steps
     WHERE task_id = adm_test.task(label) AND name = step_name
$$;
-- states shows a task's state and its steps', in one line.
CREATE FUNCTION adm_test.states(label text) RETURNS text LANGUAGE sql AS $$
    SELECT format('task %s: %s', k.current_state,
                  (SELECT string_agg(format('%s %s', s.name, s.current_state), ', '
                                     ORDER BY s.workflow_step_id)
                     FROM tasker.workflow_steps s WHERE s.task_id = k.task_id))
      FROM tasker.tasks k WHERE k.task_id = adm_test.task(label)
$$;
-- claim is a worker: it claims every ready step of the adm_test queue and
-- shows which task each belongs to.
CREATE FUNCTION adm_test.claim() RETURNS TABLE (task text, step_name text, attempt integer)
    LANGUAGE sql AS $$
    SELECT k.reason, c.step_name, c.attempt
      FROM tasker.claim_steps('adm_test', 'worker-1', 100) c JOIN tasker.tasks k USING (task_id)
     ORDER BY c.step_id
$$;

-- An order: prepare it, then pack the goods and send the invoice (which is
-- not retryable: a second invoice must be a person's decision), then ship.
SELECT tasker.register_template('{"namespace": "adm_test", "name": "order", "steps": [
    {"name": "prepare"},
    {"name": "pack", "depends_on": "prepare"},
    {"name": "invoice", "depends_on": "prepare", "retryable": false},
    {"name": "ship", "depends_on": ["pack", "invoice"]}]}') > 0 AS registered;

--------------------------------------------------------------------------
-- cancel_task(task_id, reason)
--------------------------------------------------------------------------
-- Cancelling a task cancels its unfinished steps and returns how many.
-- A pending task: all of them.
SELECT tasker.create_task('adm_test', 'order', reason => 'cancel pending') > 0 AS created;
SELECT tasker.cancel_task(adm_test.task('cancel pending'), 'customer called') AS cancelled_steps;
SELECT adm_test.states('cancel pending');
SELECT sort_key, from_state, to_state, metadata FROM tasker.task_history(adm_test.task('cancel pending'));
SELECT step_name, from_state, to_state, metadata FROM tasker.step_transitions(adm_test.task('cancel pending'));

-- A running task: finished steps stay as they are, a claimed step is
-- cancelled under its worker, whose attempt is then stale.
SELECT tasker.create_task('adm_test', 'order', reason => 'cancel running') > 0 AS created;
SELECT * FROM adm_test.claim();
SELECT tasker.complete_step(adm_test.step('cancel running', 'prepare'), 1) AS completed;
SELECT * FROM adm_test.claim();
SELECT tasker.complete_step(adm_test.step('cancel running', 'pack'), 1) AS completed;
SELECT tasker.cancel_task(adm_test.task('cancel running')) AS cancelled_steps;
SELECT adm_test.states('cancel running');
SELECT tasker.complete_step(adm_test.step('cancel running', 'invoice'), 1) AS stale_complete;
SELECT adm_test.states('cancel running');

-- A failed task can be cancelled too; its failed step is closed as well.
SELECT tasker.create_task('adm_test', 'order', reason => 'cancel failed') > 0 AS created;
SELECT * FROM adm_test.claim();
SELECT tasker.fail_step(adm_test.step('cancel failed', 'prepare'), 1, retryable => false);
SELECT adm_test.states('cancel failed');
SELECT tasker.cancel_task(adm_test.task('cancel failed'), 'giving up') AS cancelled_steps;
SELECT adm_test.states('cancel failed');

-- Refused: a task that is already finished, a task that does not exist, NULL.
CALL adm_test.expect_error($$ SELECT tasker.cancel_task(adm_test.task('cancel pending')) $$);
SELECT tasker.register_template('{"namespace": "adm_test", "name": "nothing"}') > 0 AS registered;
SELECT tasker.create_task('adm_test', 'nothing', reason => 'already complete') > 0 AS created;
CALL adm_test.expect_error($$ SELECT tasker.cancel_task(adm_test.task('already complete')) $$);
CALL adm_test.expect_error($$ SELECT tasker.cancel_task(0) $$);
CALL adm_test.expect_error($$ SELECT tasker.cancel_task(NULL) $$);

--------------------------------------------------------------------------
-- resolve_step(step_id, results, reason)
--------------------------------------------------------------------------
-- An operator marks a failed step resolved_manually, optionally with the
-- results it should have had: its children run and see those results.
SELECT tasker.create_task('adm_test', 'order', reason => 'resolve') > 0 AS created;
SELECT * FROM adm_test.claim();
SELECT tasker.fail_step(adm_test.step('resolve', 'prepare'), 1, '{"message": "address unknown"}',
                        retryable => false);
SELECT adm_test.states('resolve');
SELECT tasker.resolve_step(adm_test.step('resolve', 'prepare'), '{"address": "fixed by hand"}',
                           'called the customer');
-- The task has work again: error -> pending.
SELECT adm_test.states('resolve');
SELECT k.reason AS task, c.step_name, c.attempt, c.input -> 'dependencies' AS dependencies
  FROM tasker.claim_steps('adm_test', 'worker-1', 100) c JOIN tasker.tasks k USING (task_id)
 ORDER BY c.step_id;
SELECT step_name, from_state, to_state, metadata
  FROM tasker.step_transitions(adm_test.task('resolve')) WHERE step_name = 'prepare';

-- A step stuck in progress can be resolved too; its worker's attempt is
-- then stale.
SELECT tasker.resolve_step(adm_test.step('resolve', 'invoice'), '{"invoice": "sent by hand"}');
SELECT tasker.complete_step(adm_test.step('resolve', 'invoice'), 1) AS stale_complete;
SELECT tasker.complete_step(adm_test.step('resolve', 'pack'), 1) AS completed;
-- A finished step cannot be resolved.
CALL adm_test.expect_error($$ SELECT tasker.resolve_step(adm_test.step('resolve', 'pack')) $$);
SELECT * FROM adm_test.claim();

-- Resolving the last failed step of a failed task completes it.
SELECT tasker.fail_step(adm_test.step('resolve', 'ship'), 1, retryable => false);
SELECT adm_test.states('resolve');
SELECT tasker.resolve_step(adm_test.step('resolve', 'ship'), reason => 'shipped by courier');
SELECT adm_test.states('resolve');
SELECT sort_key, from_state, to_state FROM tasker.task_history(adm_test.task('resolve'));

-- Refused also: any step of a finished task, a step that does not exist,
-- NULL.
CALL adm_test.expect_error($$ SELECT tasker.resolve_step(adm_test.step('cancel running', 'invoice')) $$);
CALL adm_test.expect_error($$ SELECT tasker.resolve_step(0) $$);
CALL adm_test.expect_error($$ SELECT tasker.resolve_step(NULL) $$);

--------------------------------------------------------------------------
-- retry_step(step_id)
--------------------------------------------------------------------------
-- A step in error gets a fresh set of attempts: back to pending, its
-- max_attempts raised to attempts + the template's max_attempts (attempts
-- only grow: they fence workers).
SELECT tasker.create_task('adm_test', 'order', reason => 'retry step') > 0 AS created;
SELECT * FROM adm_test.claim();
SELECT tasker.fail_step(adm_test.step('retry step', 'prepare'), 1, '{"message": "disk full"}',
                        retryable => false);
SELECT adm_test.states('retry step');
SELECT tasker.retry_step(adm_test.step('retry step', 'prepare'));
SELECT adm_test.states('retry step');
SELECT name, current_state, attempts, max_attempts
  FROM tasker.workflow_steps WHERE workflow_step_id = adm_test.step('retry step', 'prepare');
SELECT step_name, from_state, to_state, metadata
  FROM tasker.step_transitions(adm_test.task('retry step'))
 WHERE step_name = 'prepare' AND to_state = 'pending';
SELECT * FROM adm_test.claim();
SELECT tasker.complete_step(adm_test.step('retry step', 'prepare'), 2) AS completed;

-- A step that is not retryable fails for good on its first failure; an
-- operator's retry still runs it once more.
SELECT * FROM adm_test.claim();
SELECT tasker.fail_step(adm_test.step('retry step', 'invoice'), 1, '{"message": "printer jam"}');
SELECT tasker.retry_step(adm_test.step('retry step', 'invoice'));
SELECT * FROM adm_test.claim();
SELECT tasker.fail_step(adm_test.step('retry step', 'invoice'), 2, '{"message": "printer jam"}');
SELECT name, current_state, attempts, max_attempts
  FROM tasker.workflow_steps WHERE workflow_step_id = adm_test.step('retry step', 'invoice');

-- Refused: a step that is not in error (pending, running, finished) ...
CALL adm_test.expect_error($$ SELECT tasker.retry_step(adm_test.step('retry step', 'ship')) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_step(adm_test.step('retry step', 'pack')) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_step(adm_test.step('retry step', 'prepare')) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_step(adm_test.step('cancel pending', 'prepare')) $$);
-- ... a step in error whose task is finished: a skippable step that failed
-- for good in a task that completed without it ...
SELECT tasker.register_template('{"namespace": "adm_test", "name": "optional", "steps": [
    {"name": "extra", "skippable": true, "retryable": false}]}') > 0 AS registered;
SELECT tasker.create_task('adm_test', 'optional', reason => 'skipped') > 0 AS created;
SELECT * FROM adm_test.claim();
SELECT tasker.fail_step(adm_test.step('skipped', 'extra'), 1);
SELECT adm_test.states('skipped');
CALL adm_test.expect_error($$ SELECT tasker.retry_step(adm_test.step('skipped', 'extra')) $$);
-- ... a step that does not exist, NULL.
CALL adm_test.expect_error($$ SELECT tasker.retry_step(0) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_step(NULL) $$);
SELECT tasker.cancel_task(adm_test.task('retry step')) AS cancelled_steps;

--------------------------------------------------------------------------
-- retry_task(task_id)
--------------------------------------------------------------------------
-- Retries every step of a task that failed for good, and returns how many.
SELECT tasker.create_task('adm_test', 'order', reason => 'retry task') > 0 AS created;
SELECT * FROM adm_test.claim();
SELECT tasker.complete_step(adm_test.step('retry task', 'prepare'), 1) AS completed;
SELECT * FROM adm_test.claim();
SELECT tasker.fail_step(adm_test.step('retry task', 'pack'), 1, retryable => false) AS pack,
       tasker.fail_step(adm_test.step('retry task', 'invoice'), 1) AS invoice;
SELECT adm_test.states('retry task');
SELECT tasker.retry_task(adm_test.task('retry task')) AS retried_steps;
SELECT adm_test.states('retry task');
SELECT * FROM adm_test.claim();
SELECT tasker.complete_step(adm_test.step('retry task', 'pack'), 2) AS pack,
       tasker.complete_step(adm_test.step('retry task', 'invoice'), 2) AS invoice;
SELECT * FROM adm_test.claim();
SELECT tasker.complete_step(adm_test.step('retry task', 'ship'), 1) AS completed;
SELECT adm_test.states('retry task');
SELECT sort_key, from_state, to_state FROM tasker.task_history(adm_test.task('retry task'));

-- Refused: a task with no failed step, a finished task, a task that does
-- not exist, NULL.
SELECT tasker.create_task('adm_test', 'order', reason => 'nothing failed') > 0 AS created;
CALL adm_test.expect_error($$ SELECT tasker.retry_task(adm_test.task('nothing failed')) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_task(adm_test.task('retry task')) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_task(adm_test.task('cancel failed')) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_task(0) $$);
CALL adm_test.expect_error($$ SELECT tasker.retry_task(NULL) $$);
SELECT tasker.cancel_task(adm_test.task('nothing failed')) AS cancelled_steps;

-- Every refusal above left things as they were.
SELECT k.reason, k.current_state
  FROM tasker.tasks k JOIN tasker.named_tasks t USING (named_task_id)
  JOIN tasker.namespaces n USING (namespace_id)
 WHERE n.name = 'adm_test'
 ORDER BY k.task_id;
