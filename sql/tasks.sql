--
-- tasks: creating tasks with tasker.create_task().
--
-- A task is one run of a template with a JSON context.  create_task checks
-- the context against the template's schema, inserts the task, all its
-- steps and edges in one go, starts bypassed steps as resolved_manually and
-- completes a task with nothing to do at once.  Identity strategies have
-- their own file (identity).  Namespace: tasks_test.
--
\set SHOW_CONTEXT never

CREATE SCHEMA tasks_test;

-- steps_of shows where the steps of a task stand, in creation (id) order.
CREATE FUNCTION tasks_test.steps_of(p_task_id bigint)
    RETURNS TABLE (name text, current_state text, queue text, priority integer,
                   retryable boolean, max_attempts integer, attempts integer, pending_parents integer)
    LANGUAGE sql AS $$
    SELECT name, current_state, queue, priority, retryable, max_attempts, attempts, pending_parents
      FROM tasker.workflow_steps WHERE task_id = p_task_id ORDER BY workflow_step_id
$$;

-- An order: validate it, then reserve the goods and charge the card (in
-- parallel), then ship, then mail the customer.
SELECT tasker.register_template($${
  "namespace": "tasks_test", "name": "order", "version": "1.0.0",
  "context_schema": {
    "type": "object", "required": ["order_id", "lines"], "additionalProperties": false,
    "properties": {
      "order_id": {"type": "integer"},
      "speed": {"enum": ["normal", "rush"]},
      "note": {"type": ["string", "null"]},
      "lines": {"type": "array",
                "items": {"type": "object", "required": ["sku", "qty"],
                          "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}}}},
  "steps": [
    {"name": "validate"},
    {"name": "reserve", "depends_on": "validate", "queue": "tasks_test_warehouse"},
    {"name": "charge", "depends_on": "validate", "max_attempts": 5},
    {"name": "ship", "depends_on": ["reserve", "charge"], "queue": "tasks_test_warehouse"},
    {"name": "email", "depends_on": "ship", "retryable": false}
  ]}$$) > 0 AS registered;

--------------------------------------------------------------------------
-- A task, its steps and its edges.
--------------------------------------------------------------------------
SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1001, "speed": "rush", "lines": [{"sku": "A-1", "qty": 2}]}',
         initiator => 'alice', source_system => 'web', reason => 'customer order',
         tags => '{checkout,rush}', priority => 5) AS order_task \gset

-- The task starts pending, with everything it was given.  Without an
-- idempotency_key, an always_unique template keeps no identity.
SELECT k.current_state, t.version, k.context, k.initiator, k.source_system, k.reason, k.tags,
       k.bypass_steps, k.priority, k.identity_hash, k.completed_at
  FROM tasker.tasks k JOIN tasker.named_tasks t USING (named_task_id)
 WHERE k.task_id = :order_task;

-- Every step of the template, pending, copying the template's queue, retry
-- settings and the task's priority; pending_parents counts the parents not
-- done yet (the claim path's readiness test).
SELECT * FROM tasks_test.steps_of(:order_task);

-- The edges, parent to child: the template's DAG, copied.  Steps are
-- inserted in dependency order, so a parent's id is always below its
-- children's (writers lock steps in id order).
SELECT p.name AS parent, c.name AS child, e.from_step_id < e.to_step_id AS parent_first
  FROM tasker.workflow_step_edges e
  JOIN tasker.workflow_steps p ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
  JOIN tasker.workflow_steps c ON c.task_id = e.task_id AND c.workflow_step_id = e.to_step_id
 WHERE e.task_id = :order_task
 ORDER BY e.from_step_id, e.to_step_id;

-- Creation is not a move: the audit trail starts empty.
SELECT count(*) AS task_transitions FROM tasker.task_history(:order_task);
SELECT count(*) AS step_transitions FROM tasker.step_transitions(:order_task);

-- Only the root is ready.  A worker claiming it gets the task's context and
-- its parents' results (none yet) in the step's input.
SELECT step_name, attempt, input - 'task_id' - 'step_id' AS input
  FROM tasker.claim_steps('tasks_test', 'worker-1', 10);
SELECT tasker.complete_step(workflow_step_id, 1, '{"valid": true}')
  FROM tasker.workflow_steps WHERE task_id = :order_task AND name = 'validate';

-- Its children are now ready, each on its own queue, and see its results.
SELECT step_name, attempt, input -> 'dependencies' AS dependencies
  FROM tasker.claim_steps('tasks_test', 'worker-1', 10);
SELECT step_name, attempt, input -> 'dependencies' AS dependencies
  FROM tasker.claim_steps('tasks_test_warehouse', 'worker-2', 10);
SELECT name, current_state, attempts, pending_parents FROM tasks_test.steps_of(:order_task);

-- The defaults: no initiator, source or reason, no tags, priority 0.
SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1002, "lines": []}') AS plain_task \gset
SELECT initiator, source_system, reason, tags, bypass_steps, priority
  FROM tasker.tasks WHERE task_id = :plain_task;

--------------------------------------------------------------------------
-- The context and the template's schema.
--------------------------------------------------------------------------
-- The context must match the template's context_schema; the error names
-- the first field that does not, by its path.
SELECT count(*) AS tasks_before FROM tasker.tasks
 WHERE named_task_id = tasker.find_template('tasks_test', 'order') \gset

SELECT tasker.create_task('tasks_test', 'order', context => '{"order_id": 1003, "speed": "normal",
         "note": null, "lines": [{"sku": "A-1", "qty": 1}, {"sku": "B-2", "qty": 3}]}') > 0 AS created;
-- a required field missing
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"lines": []}') $$);
-- a field of the wrong type: a string is not an integer, nor is 10.5
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": "1004", "lines": []}') $$);
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 10.5, "lines": []}') $$);
-- a value outside an enum
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1004, "speed": "slow", "lines": []}') $$);
-- a field the schema does not list (additionalProperties is false)
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1004, "lines": [], "coupon": "FREE"}') $$);
-- nested: the second line lacks "qty", the third has a numeric sku
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1004, "lines": [{"sku": "A-1", "qty": 1}, {"sku": "B-2"}]}') $$);
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1004, "lines": [{"sku": "A-1", "qty": 1}, {"sku": "B-2", "qty": 1}, {"sku": 3, "qty": 1}]}') $$);
-- a context that is not an object, or NULL
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '[1004]') $$);
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => NULL) $$);

-- Without a context_schema any JSON object will do (but only an object).
SELECT tasker.register_template('{"namespace": "tasks_test", "name": "free", "steps": [{"name": "only"}]}') > 0
       AS registered;
SELECT tasker.create_task('tasks_test', 'free', context => '{"anything": [1, "two", null]}') AS free_task \gset
SELECT context FROM tasker.tasks WHERE task_id = :free_task;
SELECT tasker.create_task('tasks_test', 'free') AS free_task \gset
SELECT context FROM tasker.tasks WHERE task_id = :free_task;
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'free', context => '"just a string"') $$);

-- Of all those, only the good one made a task.
SELECT count(*) - :tasks_before AS tasks_created FROM tasker.tasks
 WHERE named_task_id = tasker.find_template('tasks_test', 'order');

--------------------------------------------------------------------------
-- Unknown templates and NULL arguments.
--------------------------------------------------------------------------
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'no_such_template') $$);
CALL expect_error($$ SELECT tasker.create_task('tasks_test_nowhere', 'order') $$);
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order', '1.0.1',
         context => '{"order_id": 1, "lines": []}') $$);
CALL expect_error($$ SELECT tasker.create_task(NULL, 'order') $$);
CALL expect_error($$ SELECT tasker.create_task('tasks_test', NULL) $$);

--------------------------------------------------------------------------
-- bypass_steps.
--------------------------------------------------------------------------
-- Steps named in bypass_steps start resolved_manually (recorded as a
-- transition with {"bypassed": true}) and count as done for their children:
-- here charge waits for nothing, and ship only for charge.
SELECT tasker.create_task('tasks_test', 'order', context => '{"order_id": 1005, "lines": []}',
         bypass_steps => '{validate,reserve}') AS bypass_task \gset
SELECT bypass_steps FROM tasker.tasks WHERE task_id = :bypass_task;
SELECT name, current_state, pending_parents FROM tasks_test.steps_of(:bypass_task);
SELECT step_name, sort_key, from_state, to_state, metadata FROM tasker.step_transitions(:bypass_task);

-- Unknown step names are refused, all of them listed; NULL is no name.
SELECT count(*) AS tasks_before FROM tasker.tasks
 WHERE named_task_id = tasker.find_template('tasks_test', 'order') \gset
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1006, "lines": []}', bypass_steps => '{validate,shipping,charging}') $$);
CALL expect_error($$ SELECT tasker.create_task('tasks_test', 'order',
         context => '{"order_id": 1006, "lines": []}', bypass_steps => '{validate,NULL}') $$);
SELECT count(*) - :tasks_before AS tasks_created FROM tasker.tasks
 WHERE named_task_id = tasker.find_template('tasks_test', 'order');

--------------------------------------------------------------------------
-- Tasks with nothing to do complete at once.
--------------------------------------------------------------------------
-- A template without steps: the task is complete when create_task returns.
SELECT tasker.register_template('{"namespace": "tasks_test", "name": "empty"}') > 0 AS registered;
SELECT tasker.create_task('tasks_test', 'empty') AS empty_task \gset
SELECT current_state, completed_at IS NOT NULL AS has_completed_at
  FROM tasker.tasks WHERE task_id = :empty_task;
SELECT sort_key, from_state, to_state, metadata FROM tasker.task_history(:empty_task);

-- Every step bypassed: the same.
SELECT tasker.create_task('tasks_test', 'order', context => '{"order_id": 1007, "lines": []}',
         bypass_steps => '{validate,reserve,charge,ship,email}') AS all_bypassed \gset
SELECT current_state, completed_at IS NOT NULL AS has_completed_at
  FROM tasker.tasks WHERE task_id = :all_bypassed;
SELECT sort_key, from_state, to_state, metadata FROM tasker.task_history(:all_bypassed);
SELECT count(*) AS bypassed_steps FROM tasker.workflow_steps
 WHERE task_id = :all_bypassed AND current_state = 'resolved_manually';

--------------------------------------------------------------------------
-- Priority and tags.
--------------------------------------------------------------------------
-- A task's priority is copied onto its steps: claims take higher priorities
-- first, then older tasks.  Tags are free text labels to search by.
SELECT tasker.register_template('{"namespace": "tasks_test", "name": "job",
    "steps": [{"name": "run", "queue": "tasks_test_jobs"}]}') > 0 AS registered;
SELECT tasker.create_task('tasks_test', 'job', reason => 'normal', tags => '{nightly}') > 0 AS created;
SELECT tasker.create_task('tasks_test', 'job', reason => 'urgent', priority => 10,
                          tags => '{nightly,urgent}') > 0 AS created;
SELECT tasker.create_task('tasks_test', 'job', reason => 'whenever', priority => -5) > 0 AS created;
SELECT tasker.create_task('tasks_test', 'job', reason => 'normal, later', tags => NULL) > 0 AS created;

SELECT k.reason, k.priority, k.tags, s.priority AS step_priority
  FROM tasker.tasks k JOIN tasker.workflow_steps s USING (task_id)
 WHERE k.named_task_id = tasker.find_template('tasks_test', 'job')
 ORDER BY k.task_id;

SELECT k.reason, c.step_name
  FROM tasker.claim_steps('tasks_test_jobs', 'worker-3', 1) c JOIN tasker.tasks k USING (task_id);
SELECT k.reason, c.step_name
  FROM tasker.claim_steps('tasks_test_jobs', 'worker-3', 2) c JOIN tasker.tasks k USING (task_id)
 ORDER BY k.task_id;
SELECT k.reason, c.step_name
  FROM tasker.claim_steps('tasks_test_jobs', 'worker-3', 1) c JOIN tasker.tasks k USING (task_id);

SELECT reason FROM tasker.tasks
 WHERE named_task_id = tasker.find_template('tasks_test', 'job') AND tags @> '{nightly}'
 ORDER BY task_id;
