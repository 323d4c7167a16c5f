-- tasker.create_tasks: many tasks of a template in one call, each as
-- create_task would make it.  Ids are not shown (other tests create tasks
-- too); tasks are named by their context.

SELECT tasker.register_template('{
  "namespace": "bcreate", "name": "diamond", "version": "1.0.0",
  "steps": [
    {"name": "a", "queue": "bcreate"},
    {"name": "b", "queue": "bcreate", "depends_on": ["a"]},
    {"name": "c", "queue": "bcreate", "depends_on": ["a"]},
    {"name": "d", "queue": "bcreate", "depends_on": ["b", "c"]}
  ]}') IS NOT NULL AS registered;
SELECT tasker.register_template('{
  "namespace": "bcreate", "name": "keyed", "version": "1.0.0",
  "identity_strategy": "caller_provided", "steps": [{"name": "x", "queue": "bcreate"}]}') IS NOT NULL AS registered;
SELECT tasker.register_template('{
  "namespace": "bcreate", "name": "strict", "version": "1.0.0",
  "identity_strategy": "strict", "steps": [{"name": "y", "queue": "bcreate"}]}') IS NOT NULL AS registered;
SELECT tasker.register_template('{
  "namespace": "bcreate", "name": "empty", "version": "1.0.0", "steps": []}') IS NOT NULL AS registered;

-- three diamonds in one call, one by create_task: the same rows
SELECT cardinality(tasker.create_tasks('bcreate', 'diamond',
       ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[], priority => 5)) AS created;
SELECT tasker.create_task('bcreate', 'diamond', context => '{"n": 4}', priority => 5) > 0 AS created;

CREATE TEMP VIEW bcreate_steps AS
SELECT (t.context ->> 'n')::integer AS n, t.current_state AS task_state, t.priority AS task_priority,
       s.name, s.workflow_step_id, s.current_state, s.pending_parents, s.priority, s.queue,
       s.attempts, s.max_attempts, s.retryable, s.transitions, s.task_id
  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
  JOIN tasker.named_tasks nt USING (named_task_id)
 WHERE nt.name = 'diamond' AND s.queue = 'bcreate' AND t.context ? 'n';

-- every task's steps, states and counts as create_task makes them
SELECT n, task_state, task_priority, name, current_state, pending_parents, priority, queue,
       attempts, max_attempts, retryable, transitions
  FROM bcreate_steps ORDER BY n, name;

-- the same edges (parent -> child by name) in every task
SELECT (t.context ->> 'n')::integer AS n,
       string_agg(f.name || '->' || c.name, ' ' ORDER BY f.name, c.name) AS edges
  FROM tasker.workflow_step_edges e
  JOIN tasker.tasks t USING (task_id)
  JOIN tasker.workflow_steps f ON f.task_id = e.task_id AND f.workflow_step_id = e.from_step_id
  JOIN tasker.workflow_steps c ON c.task_id = e.task_id AND c.workflow_step_id = e.to_step_id
 WHERE f.queue = 'bcreate'
 GROUP BY 1 ORDER BY 1;

-- ids: tasks in the order of the contexts, and within a task every child
-- after its parents (the lock order every writer keeps)
SELECT bool_and(a.task_id < b.task_id) AS tasks_in_order
  FROM bcreate_steps a JOIN bcreate_steps b ON b.n = a.n + 1 AND a.name = 'a' AND b.name = 'a'
 WHERE a.n < 3;
SELECT bool_and(p.workflow_step_id < c.workflow_step_id) AS children_after_parents
  FROM tasker.workflow_step_edges e
  JOIN bcreate_steps p ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
  JOIN bcreate_steps c ON c.task_id = e.task_id AND c.workflow_step_id = e.to_step_id;

-- the roots are claimable at once
SELECT count(*) AS claimed FROM tasker.claim_steps('bcreate', 'w', 10);

-- idempotency keys: a repeated key in the batch and a key already used
-- name the same task; a NULL key makes a new one
SELECT tasker.create_tasks('bcreate', 'keyed', ARRAY['{}', '{}', '{}']::jsonb[],
                           idempotency_keys => ARRAY['k1', 'k2', 'k1']) AS ids \gset
SELECT :'ids'::bigint[] IS NOT NULL AS returned,
       (:'ids'::bigint[])[1] = (:'ids'::bigint[])[3] AS repeated_key_same_task,
       (:'ids'::bigint[])[1] <> (:'ids'::bigint[])[2] AS other_key_other_task;
SELECT (tasker.create_tasks('bcreate', 'keyed', ARRAY['{}']::jsonb[], idempotency_keys => ARRAY['k2']))[1]
       = (:'ids'::bigint[])[2] AS used_key_same_task;
SELECT tasker.create_task('bcreate', 'keyed', idempotency_key => 'k1') = (:'ids'::bigint[])[1]
       AS create_task_agrees;
SELECT count(*) AS keyed_tasks FROM tasker.tasks t JOIN tasker.named_tasks nt USING (named_task_id)
 WHERE nt.name = 'keyed';

-- arrays with other bounds are read element by element, in order
SELECT (tasker.create_tasks('bcreate', 'keyed', '[0:1]={"{}","{}"}'::jsonb[],
                            idempotency_keys => '[5:6]={k1,k2}'::text[]))
       = (:'ids'::bigint[])[1:2] AS other_bounds_same_tasks;

-- strict identity: the same context names the same task, as with create_task
SELECT tasker.create_tasks('bcreate', 'strict', ARRAY['{"s": 1}', '{"s": 2}', '{"s": 1}']::jsonb[]) AS sids \gset
SELECT (:'sids'::bigint[])[1] = (:'sids'::bigint[])[3] AS same_context_same_task,
       tasker.create_task('bcreate', 'strict', context => '{"s": 2}') = (:'sids'::bigint[])[2]
       AS create_task_agrees;

-- the rest of create_task's request, shared by the batch (initiator,
-- source, reason, tags, bypassed steps): the same rows as create_task's
SELECT cardinality(tasker.create_tasks('bcreate', 'diamond', ARRAY['{"m": 1}', '{"m": 2}']::jsonb[],
       initiator => 'ops', source_system => 'cli', reason => 'backfill', tags => ARRAY['x', 'y'],
       bypass_steps => ARRAY['b'])) AS created;
SELECT tasker.create_task('bcreate', 'diamond', context => '{"m": 3}', initiator => 'ops',
       source_system => 'cli', reason => 'backfill', tags => ARRAY['x', 'y'],
       bypass_steps => ARRAY['b']) > 0 AS created;
SELECT (t.context ->> 'm')::integer AS m, t.initiator, t.source_system, t.reason, t.tags,
       t.bypass_steps, t.current_state,
       string_agg(concat_ws(':', s.name, s.current_state, s.pending_parents, s.transitions,
                            s.completed_at IS NOT NULL, s.children_released), ' ' ORDER BY s.name) AS steps
  FROM tasker.tasks t JOIN tasker.workflow_steps s USING (task_id)
 WHERE t.context ? 'm' GROUP BY t.task_id ORDER BY 1;
SELECT (t.context ->> 'm')::integer AS m, s.name, tr.from_state, tr.to_state, tr.sort_key, tr.metadata
  FROM tasker.workflow_step_transitions tr
  JOIN tasker.workflow_steps s USING (task_id, workflow_step_id) JOIN tasker.tasks t USING (task_id)
 WHERE t.context ? 'm' ORDER BY 1, 2;
-- every step bypassed: complete at once, as with create_task; and a
-- bypassed root makes its children ready, as with create_task
SELECT (tasker.create_tasks('bcreate', 'diamond', ARRAY['{"all": 1}']::jsonb[],
                            bypass_steps => ARRAY['a', 'b', 'c', 'd']))[1] AS all_batch \gset
SELECT tasker.create_task('bcreate', 'diamond', context => '{"all": 2}',
                          bypass_steps => ARRAY['a', 'b', 'c', 'd']) AS all_single \gset
SELECT (tasker.create_tasks('bcreate', 'diamond', ARRAY['{"root": 1}']::jsonb[],
                            bypass_steps => ARRAY['a']))[1] AS root_batch \gset
SELECT tasker.create_task('bcreate', 'diamond', context => '{"root": 2}',
                          bypass_steps => ARRAY['a']) AS root_single \gset
SELECT CASE t.task_id WHEN :all_batch THEN 'all, batch' WHEN :all_single THEN 'all, single'
                      WHEN :root_batch THEN 'root, batch' ELSE 'root, single' END AS task,
       t.current_state, t.completed_at IS NOT NULL AS completed_at_set,
       (SELECT string_agg(h.from_state || '->' || h.to_state, ' ' ORDER BY h.sort_key)
          FROM tasker.task_transitions h WHERE h.task_id = t.task_id) AS task_transitions,
       (SELECT string_agg(concat_ws(':', s.name, s.current_state, s.pending_parents, s.transitions,
                                    s.completed_at IS NOT NULL, s.children_released), ' ' ORDER BY s.name)
          FROM tasker.workflow_steps s WHERE s.task_id = t.task_id) AS steps,
       (SELECT string_agg(r.name || ':' || r.ready_for_execution, ' ' ORDER BY r.name)
          FROM tasker.step_readiness_status(t.task_id) r) AS readiness
  FROM tasker.tasks t WHERE t.task_id IN (:all_batch, :all_single, :root_batch, :root_single)
 ORDER BY 1;
-- strict identity over the whole request, tags in any order, as create_task's
SELECT (tasker.create_tasks('bcreate', 'strict', ARRAY['{"s": 9}']::jsonb[], initiator => 'ops',
                            tags => ARRAY['b', 'a']))[1] AS s9 \gset
SELECT tasker.create_task('bcreate', 'strict', context => '{"s": 9}', initiator => 'ops',
                          tags => ARRAY['a', 'b']) = :s9 AS create_task_agrees,
       (tasker.create_tasks('bcreate', 'strict', ARRAY['{"s": 9}']::jsonb[],
                            initiator => 'someone else'))[1] <> :s9 AS other_initiator_other_task;

-- a template without steps: its tasks complete at once
SELECT tasker.create_tasks('bcreate', 'empty', ARRAY['{}', '{}']::jsonb[]) AS eids \gset
SELECT t.current_state, count(*) FROM tasker.tasks t WHERE t.task_id = ANY (:'eids'::bigint[]) GROUP BY 1;

-- nothing to create
SELECT tasker.create_tasks('bcreate', 'diamond', '{}'::jsonb[]) AS none;

-- bad input: a clear error (SQLSTATE and message) and nothing written
CREATE PROCEDURE pg_temp.refused(statement text) LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
BEGIN
    EXECUTE statement;
    RAISE EXCEPTION 'not refused: %', statement;
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    IF message LIKE 'not refused:%' THEN
        RAISE;
    END IF;
    RAISE NOTICE 'error %: %', state, message;
END $$;
\set SHOW_CONTEXT never
SELECT count(*) AS tasks_before FROM tasker.tasks \gset
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'diamond', NULL) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'diamond', ARRAY['{}', NULL]::jsonb[]) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'diamond', ARRAY['{}', '[1]']::jsonb[]) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'keyed', ARRAY['{}', '{}']::jsonb[],
                                                    idempotency_keys => ARRAY['k9', NULL]) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'keyed', ARRAY['{}', '{}']::jsonb[],
                                                    idempotency_keys => ARRAY['k9']) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'nosuch', ARRAY['{}']::jsonb[]) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'diamond', ARRAY['{}']::jsonb[],
                                                    bypass_steps => ARRAY['a', 'zz']) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'diamond', ARRAY['{}']::jsonb[],
                                                    tags => ARRAY['x', NULL]) $$);
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'diamond', array_fill('{}'::jsonb, ARRAY[10001])) $$);
SET tasker.max_context_size = 1;
CALL pg_temp.refused($$ SELECT tasker.create_tasks('bcreate', 'diamond',
                                                    ARRAY['{}', jsonb_build_object('big', repeat('x', 2000))]) $$);
RESET tasker.max_context_size;
SELECT count(*) - :tasks_before AS tasks_written FROM tasker.tasks;

SELECT count(*) AS invariant_violations FROM tasker.check_invariants();
