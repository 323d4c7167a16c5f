-- The operator's views and pictures: task_graph / template_graph (Mermaid,
-- DOT), explain_task, active_tasks, failed_steps, stuck_steps, queue_depths.
SET tasker.backoff_jitter = 0;
SET tasker.backoff_base = 60;
SELECT tasker.register_template($$ {
  "namespace": "ops_test", "name": "order", "version": "1.0.0",
  "steps": [
    {"name": "validate", "queue": "ops_q"},
    {"name": "reserve", "queue": "ops_q", "depends_on": ["validate"]},
    {"name": "charge", "queue": "ops_q", "depends_on": ["validate"], "max_attempts": 2},
    {"name": "ship", "queue": "ops_q", "depends_on": ["reserve", "charge"]},
    {"name": "audit", "queue": "ops_q", "depends_on": ["validate"], "retryable": false}
  ]} $$) > 0 AS registered;

-- The template's DAG: node ids are the steps' positions.
SELECT tasker.template_graph('ops_test', 'order');
SELECT tasker.template_graph('ops_test', 'order', '1.0.0', 'dot');
SELECT tasker.template_graph('ops_test', 'order', format => 'svg');
SELECT tasker.template_graph('ops_test', 'nope');

SELECT tasker.create_task('ops_test', 'order', context => '{"order_id": 1}') AS t \gset

-- Drive it: validate completes, charge fails once (backing off 60 s),
-- audit fails for good, reserve is claimed and left running.
SELECT tasker.complete_step(step_id, attempt, '{"ok": true}')
  FROM tasker.claim_steps('ops_q', 'ops-worker', 1);
SELECT step_name FROM tasker.claim_steps('ops_q', 'ops-worker', 3) ORDER BY step_name;
SELECT tasker.fail_step(workflow_step_id, attempts, '{"message": "gateway timeout"}')
  FROM tasker.workflow_steps WHERE task_id = :t AND name = 'charge';
SELECT tasker.fail_step(workflow_step_id, attempts, '{"message": "audit log full"}', false)
  FROM tasker.workflow_steps WHERE task_id = :t AND name = 'audit';

-- A task's DAG, nodes coloured by state, numbered like its template's.
SELECT line FROM regexp_split_to_table(tasker.task_graph(:t), E'\n') WITH ORDINALITY AS l(line, n)
 WHERE line NOT LIKE '%classDef%' ORDER BY n;
SELECT line FROM regexp_split_to_table(tasker.task_graph(:t, 'dot'), E'\n') WITH ORDINALITY AS l(line, n)
 ORDER BY n;
SELECT tasker.task_graph(-1);

-- Why the task is where it is.
-- (task id and clock times masked: they differ from run to run)
SELECT regexp_replace(regexp_replace(tasker.explain_task(:t), '^task \d+', 'task N'),
                      '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+ s\)', '<time>', 'g');
-- and the relative times are right to the second
SELECT substring(tasker.explain_task(:t) FROM 'lease ends [^(]*\(in (\d+) s\)')::int BETWEEN 290 AND 300 AS lease_in_5_min,
       substring(tasker.explain_task(:t) FROM 'retries [^(]*\(in (\d+) s\)')::int BETWEEN 110 AND 120 AS retry_in_2_min;
SELECT tasker.explain_task(-1);

-- The views an operator would guess.
SELECT name, current_state, steps, steps_done FROM tasker.active_tasks WHERE namespace = 'ops_test';
SELECT step_name, current_state, attempts, max_attempts, last_error
  FROM tasker.failed_steps WHERE task_name = 'order' ORDER BY step_name;
SELECT queue, in_database, ready, backing_off, in_progress FROM tasker.queue_depths WHERE queue = 'ops_q';

-- stuck_steps: a lease that has run out, and a ready step no one claims.
UPDATE tasker.workflow_steps SET lease_expires_at = now() - interval '1 minute'
 WHERE task_id = :t AND name = 'reserve';
SELECT step_name, current_state, reason, claimed_by FROM tasker.stuck_steps WHERE task_id = :t;
SELECT tasker.create_task('ops_test', 'order') AS t2 \gset
SET tasker.stuck_step_threshold = '1s';
UPDATE tasker.workflow_steps SET updated_at = now() - interval '1 minute'
 WHERE task_id = :t2 AND name = 'validate';
SELECT step_name, current_state, reason FROM tasker.stuck_steps WHERE task_id = :t2;
RESET tasker.stuck_step_threshold;
SELECT count(*) AS stuck_with_default_threshold FROM tasker.stuck_steps WHERE task_id = :t2;

SELECT tasker.cancel_task(:t) + tasker.cancel_task(:t2) AS cancelled_steps;
SELECT count(*) AS active_after_cancel FROM tasker.active_tasks WHERE namespace = 'ops_test';
