-- tasker.complete_steps: completing a batch of claimed steps in one call,
-- element by element as complete_step would (stale ones are skipped), with
-- each task finalized once.  Ids are not shown (other tests create tasks
-- too); steps are named by template and step name.
SET tasker.backoff_jitter = 0;

SELECT tasker.register_template('{
  "namespace": "batch", "name": "diamond", "version": "1.0.0",
  "steps": [
    {"name": "a", "queue": "batch"},
    {"name": "b", "queue": "batch", "depends_on": ["a"]},
    {"name": "c", "queue": "batch", "depends_on": ["a"]},
    {"name": "d", "queue": "batch", "depends_on": ["b", "c"]}
  ]}') IS NOT NULL AS registered;

SELECT count(tasker.create_task('batch', 'diamond', context => jsonb_build_object('n', g))) AS tasks
  FROM generate_series(1, 3) g;

-- the steps of this test's tasks, with the task's number from its context
CREATE TEMP VIEW batch_steps AS
SELECT (t.context ->> 'n')::integer AS n, s.name, s.workflow_step_id, s.current_state,
       s.attempts, s.pending_parents, s.results
  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
 WHERE s.queue = 'batch';

-- Claim the three "a" steps and complete them in one call: 3 accepted.
CREATE TEMP TABLE claimed AS
SELECT step_id, attempt, step_name, (input #>> '{context,n}')::integer AS n
  FROM tasker.claim_steps('batch', 'w1', 10);
SELECT n, step_name, attempt FROM claimed ORDER BY n;
SELECT tasker.complete_steps(array_agg(step_id), array_agg(attempt),
                             array_agg(jsonb_build_object('n', n) ORDER BY step_id))
  FROM (SELECT * FROM claimed ORDER BY step_id) c;
-- their children are ready: b and c of every task
SELECT n, name, current_state, pending_parents, results FROM batch_steps ORDER BY n, name;

-- results may be omitted ('{}' each); a repeated element is stale after
-- the first, and so is a wrong attempt: 2 of these 4 elements are accepted.
TRUNCATE claimed;
INSERT INTO claimed
SELECT step_id, attempt, step_name, (input #>> '{context,n}')::integer
  FROM tasker.claim_steps('batch', 'w1', 2);
SELECT n, step_name, attempt FROM claimed ORDER BY n, step_name;
SELECT tasker.complete_steps(ARRAY[b.step_id, b.step_id, c.step_id, c.step_id],
                             ARRAY[b.attempt, b.attempt, c.attempt + 1, c.attempt])
  FROM claimed b, claimed c WHERE b.step_name = 'b' AND c.step_name = 'c';
-- task 1's d became ready once: both parents were in the batch
SELECT n, name, current_state, pending_parents, results FROM batch_steps WHERE n = 1 ORDER BY name;

-- A batch across tasks (claims go by priority, then task, then step):
-- task 1's d, which finishes task 1, and b and c of task 2, which make
-- task 2's d ready.  Task 3 is untouched.
TRUNCATE claimed;
INSERT INTO claimed
SELECT step_id, attempt, step_name, (input #>> '{context,n}')::integer
  FROM tasker.claim_steps('batch', 'w1', 3);
SELECT n, step_name, attempt FROM claimed ORDER BY n, step_name;
SELECT tasker.complete_steps(array_agg(step_id ORDER BY step_id DESC),   -- any order is fine
                             array_agg(attempt ORDER BY step_id DESC),
                             array_agg(NULL::jsonb ORDER BY step_id DESC))
  FROM claimed;
SELECT n, name, current_state, pending_parents FROM batch_steps WHERE n IN (2, 3) ORDER BY n, name;

-- Stale attempts change nothing: an element for a step that is complete
-- already, and one for a cancelled task.
SELECT tasker.cancel_task(t.task_id) AS cancelled_steps
  FROM tasker.tasks t JOIN tasker.templates USING (named_task_id)
 WHERE namespace = 'batch' AND t.context ->> 'n' = '3';
SELECT tasker.complete_steps(array_agg(workflow_step_id), array_agg(greatest(attempts, 1)))
  FROM batch_steps WHERE (n = 1 AND name = 'a') OR (n = 3 AND name = 'c');
SELECT n, name, current_state FROM batch_steps WHERE n = 3 ORDER BY name;

-- Task 2's last step finalizes it; task 3 was cancelled.  Each task has
-- one transition per change of state.
TRUNCATE claimed;
INSERT INTO claimed
SELECT step_id, attempt, step_name, (input #>> '{context,n}')::integer
  FROM tasker.claim_steps('batch', 'w1', 10);
SELECT n, step_name, attempt FROM claimed ORDER BY n, step_name;
SELECT tasker.complete_steps(array_agg(step_id), array_agg(attempt)) FROM claimed;
SELECT (t.context ->> 'n')::integer AS n, h.sort_key, h.from_state, h.to_state
  FROM tasker.tasks t JOIN tasker.templates USING (named_task_id),
       tasker.task_history(t.task_id) h
 WHERE namespace = 'batch' ORDER BY n, h.sort_key;
-- every completion wrote one transition, with the attempt and the worker
SELECT s.n, s.name, tr.from_state, tr.to_state, tr.metadata
  FROM batch_steps s JOIN tasker.workflow_step_transitions tr USING (workflow_step_id)
 WHERE s.n = 1 AND tr.to_state = 'complete' ORDER BY s.name;

-- An empty batch does nothing.
SELECT tasker.complete_steps('{}', '{}');

-- Bad input: arrays of different lengths, nulls, a step that does not exist.
SELECT tasker.complete_steps('{1,2}', '{1}');
SELECT tasker.complete_steps('{1}', '{1}', '{}');
SELECT tasker.complete_steps(NULL, '{1}');
SELECT tasker.complete_steps('{1,NULL}', '{1,1}');
SELECT tasker.complete_steps('{-1}', '{1}');

DROP VIEW batch_steps;
DROP TABLE claimed;
RESET tasker.backoff_jitter;
