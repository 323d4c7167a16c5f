-- tasker_filler.sql: current_setting('bench.rows') finished steps in queue w4
-- (the queue the growth workload claims from) — complete tasks of a 10-step
-- chain with their edges and transitions (2 per task, 2 per step), written in
-- bulk rather than through the API, as test/bench/readiness/filler.sql does.
SELECT tasker.register_template(jsonb_build_object(
    'namespace', 'w4fill', 'name', 'chain10', 'version', '1.0.0',
    'steps', (SELECT jsonb_agg(CASE WHEN i = 1 THEN jsonb_build_object('name', 's1', 'queue', 'w4')
                                    ELSE jsonb_build_object('name', 's' || i, 'queue', 'w4',
                                                            'depends_on', jsonb_build_array('s' || (i - 1)))
                               END ORDER BY i)
                FROM generate_series(1, 10) i))) IS NOT NULL AS registered;

CREATE TEMP TABLE filler_tasks AS
WITH ins AS (
    INSERT INTO tasker.tasks (named_task_id, current_state, transitions, created_at, updated_at,
                              completed_at)
    SELECT tasker.find_template('w4fill', 'chain10'), 'complete', 2,
           now() - make_interval(secs => g * 0.6) - interval '30 seconds',
           now() - make_interval(secs => g * 0.6),
           now() - make_interval(secs => g * 0.6)
      FROM generate_series(1, current_setting('bench.rows')::integer / 10) g
    RETURNING task_id, created_at, completed_at)
SELECT * FROM ins;

INSERT INTO tasker.task_transitions (task_id, from_state, to_state, sort_key, created_at)
SELECT task_id, 'pending', 'in_progress', 1, created_at FROM filler_tasks
UNION ALL
SELECT task_id, 'in_progress', 'complete', 2, completed_at FROM filler_tasks;

CREATE TEMP TABLE filler_steps AS
WITH ins AS (
    INSERT INTO tasker.workflow_steps (task_id, named_step_id, name, current_state, queue, attempts,
                                       pending_parents, children_released, transitions, results,
                                       last_attempted_at, created_at, updated_at, completed_at)
    SELECT t.task_id, n.named_step_id, n.name, 'complete', 'w4', 1, 0, true, 2, '{}',
           t.created_at + make_interval(secs => n.position * 3 - 3), t.created_at,
           t.created_at + make_interval(secs => n.position * 3),
           t.created_at + make_interval(secs => n.position * 3)
      FROM filler_tasks t
     CROSS JOIN tasker.named_steps n
     WHERE n.named_task_id = tasker.find_template('w4fill', 'chain10')
     ORDER BY t.task_id, n.position
    RETURNING task_id, workflow_step_id, last_attempted_at, completed_at)
SELECT * FROM ins;

INSERT INTO tasker.workflow_step_edges (task_id, from_step_id, to_step_id)
SELECT task_id, from_id, to_id
  FROM (SELECT task_id, workflow_step_id AS from_id,
               lead(workflow_step_id) OVER (PARTITION BY task_id ORDER BY workflow_step_id) AS to_id
          FROM filler_steps) e
 WHERE to_id IS NOT NULL;

INSERT INTO tasker.workflow_step_transitions (task_id, workflow_step_id, from_state, to_state,
                                              sort_key, metadata, created_at)
SELECT task_id, workflow_step_id, 'pending', 'in_progress', 1, '{"attempt": 1}'::jsonb, last_attempted_at
  FROM filler_steps
UNION ALL
SELECT task_id, workflow_step_id, 'in_progress', 'complete', 2, '{"attempt": 1}'::jsonb, completed_at
  FROM filler_steps;
DROP TABLE filler_tasks, filler_steps;
