-- tasker.check_invariants() checks the schema's rows from scratch and
-- returns one row per violation (none when everything holds);
-- tasker.invariants_hold() says the same as a boolean, or raises.
-- Details name ids, which depend on what ran before: they are shown with
-- every number as N.

-- A diamond whose "b" may be skipped: a -> (b, c) -> d.
SELECT tasker.register_template('{"namespace": "inv", "name": "diamond", "steps": [
    {"name": "a"},
    {"name": "b", "depends_on": "a", "skippable": true, "max_attempts": 1},
    {"name": "c", "depends_on": "a"},
    {"name": "d", "depends_on": ["b", "c"]}]}') IS NOT NULL AS registered;

CREATE FUNCTION pg_temp.step(p_task bigint, p_name text) RETURNS bigint
    LANGUAGE sql AS $$
    SELECT workflow_step_id FROM tasker.workflow_steps WHERE task_id = p_task AND name = p_name
$$;
CREATE FUNCTION pg_temp.attempt(p_task bigint, p_name text) RETURNS integer
    LANGUAGE sql AS $$
    SELECT attempts FROM tasker.workflow_steps WHERE task_id = p_task AND name = p_name
$$;
CREATE FUNCTION pg_temp.claim(n integer) RETURNS SETOF text
    LANGUAGE sql AS $$
    SELECT step_name FROM tasker.claim_steps('inv', 'inv-worker', n) ORDER BY step_id
$$;

-- Healthy data: tasks taken through every kind of move.
-- Task 1: b fails for good and is skipped, d runs; an operator retries b,
-- which runs again; the task completes.
SELECT tasker.create_task('inv', 'diamond') AS t1 \gset
SELECT pg_temp.claim(1);
SELECT tasker.complete_step(pg_temp.step(:t1, 'a'), 1);
SELECT pg_temp.claim(2);
SELECT tasker.fail_step(pg_temp.step(:t1, 'b'), 1, '{"message": "no"}', retryable => false);
SELECT tasker.complete_step(pg_temp.step(:t1, 'c'), 1);
SELECT tasker.retry_step(pg_temp.step(:t1, 'b'));
SELECT pg_temp.claim(2);
SELECT tasker.complete_step(pg_temp.step(:t1, 'b'), 2), tasker.complete_step(pg_temp.step(:t1, 'd'), 1);
SELECT current_state FROM tasker.tasks WHERE task_id = :t1;

-- Task 3: cancelled while a runs.
SELECT tasker.create_task('inv', 'diamond') AS t3 \gset
SELECT pg_temp.claim(1);
SELECT tasker.cancel_task(:t3, 'changed my mind');

-- Task 4: c fails for good, so the task is in error; an operator resolves
-- c and d runs.
SELECT tasker.create_task('inv', 'diamond') AS t4 \gset
SELECT pg_temp.claim(1);
SELECT tasker.complete_step(pg_temp.step(:t4, 'a'), 1);
SELECT pg_temp.claim(2);
SELECT tasker.complete_step(pg_temp.step(:t4, 'b'), 1);
SELECT tasker.fail_step(pg_temp.step(:t4, 'c'), 1, '{"message": "broken"}', retryable => false);
SELECT current_state FROM tasker.tasks WHERE task_id = :t4;
SELECT tasker.resolve_step(pg_temp.step(:t4, 'c'), '{"by": "hand"}');
SELECT pg_temp.claim(1);

-- Task 5: a failed once and waits an hour for its retry.
SELECT tasker.create_task('inv', 'diamond') AS t5 \gset
SELECT pg_temp.claim(1);
SELECT tasker.fail_step(pg_temp.step(:t5, 'a'), 1, '{"message": "later"}', backoff_seconds => 3600);

-- Task 2: a bypassed at creation.
SELECT tasker.create_task('inv', 'diamond', bypass_steps => '{a}') AS t2 \gset

SELECT task_id = :t1 AS t1, task_id = :t2 AS t2, task_id = :t3 AS t3, task_id = :t4 AS t4,
       task_id = :t5 AS t5, current_state
  FROM tasker.tasks WHERE task_id IN (:t1, :t2, :t3, :t4, :t5) ORDER BY task_id;

-- All of it is consistent.
SELECT * FROM tasker.check_invariants();
SELECT tasker.invariants_hold();

-- Now the same rows, broken on purpose one way at a time, inside a
-- transaction that is rolled back.  Some breaks need the triggers out of
-- the way (session_replication_role = replica skips the state machine,
-- the counters and the foreign keys, as a careless restore would).
CREATE FUNCTION pg_temp.violations() RETURNS TABLE (invariant text, detail text)
    LANGUAGE sql AS $$
    SELECT invariant, regexp_replace(detail, '[0-9]+', 'N', 'g') FROM tasker.check_invariants()
$$;
BEGIN;
SAVEPOINT healthy;

-- a step's transitions counter drifts from its log
UPDATE tasker.workflow_steps SET transitions = transitions + 1 WHERE workflow_step_id = pg_temp.step(:t1, 'a');
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a task's last transition is lost
DELETE FROM tasker.task_transitions
 WHERE task_id = :t1 AND sort_key = (SELECT max(sort_key) FROM tasker.task_transitions WHERE task_id = :t1);
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a gap in a step's transition numbers
UPDATE tasker.workflow_step_transitions SET sort_key = 9
 WHERE workflow_step_id = pg_temp.step(:t1, 'b') AND sort_key = 5;
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a transition that does not start where the previous one ended (and is
-- not a legal move)
UPDATE tasker.workflow_step_transitions SET from_state = 'pending'
 WHERE workflow_step_id = pg_temp.step(:t1, 'd') AND sort_key = 2;
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a state changed without its transition (and without the triggers)
SET LOCAL session_replication_role = replica;
UPDATE tasker.workflow_steps SET current_state = 'cancelled' WHERE workflow_step_id = pg_temp.step(:t2, 'd');
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- the hot path's count of unfinished parents is wrong
UPDATE tasker.workflow_steps SET pending_parents = 0 WHERE workflow_step_id = pg_temp.step(:t5, 'd');
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a complete step never released its children
UPDATE tasker.workflow_steps SET children_released = false WHERE workflow_step_id = pg_temp.step(:t1, 'a');
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- the state counters drift from a full count
UPDATE tasker.state_counts SET steps_complete = steps_complete + 5
 WHERE slot = (SELECT min(slot) FROM tasker.state_counts);
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- an edge of task 2 starts at a step of task 1 (foreign keys skipped)
SET LOCAL session_replication_role = replica;
INSERT INTO tasker.workflow_step_edges (task_id, from_step_id, to_step_id)
VALUES (:t2, pg_temp.step(:t1, 'a'), pg_temp.step(:t2, 'd'));
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a cycle d -> a, in the template and in a task
INSERT INTO tasker.named_step_edges (named_task_id, from_named_step_id, to_named_step_id)
SELECT s.named_task_id, d.named_step_id, s.named_step_id
  FROM tasker.named_steps s JOIN tasker.named_steps d USING (named_task_id)
 WHERE s.named_task_id = tasker.find_template('inv', 'diamond') AND s.name = 'a' AND d.name = 'd';
INSERT INTO tasker.workflow_step_edges (task_id, from_step_id, to_step_id)
VALUES (:t5, pg_temp.step(:t5, 'd'), pg_temp.step(:t5, 'a'));
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a task marked complete (with its transition) while its steps still wait
SELECT tasker._move_task(:t5, 'in_progress', 'complete');
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a task in error that has no failed step and a step that can run
SELECT tasker._move_task(:t5, 'in_progress', 'error');
SELECT * FROM pg_temp.violations();
ROLLBACK TO healthy;

-- a writer that completes the last step but forgets to finalize the task
UPDATE tasker.workflow_steps SET current_state = 'complete', transitions = transitions + 1,
       children_released = true, completed_at = now()
 WHERE workflow_step_id = pg_temp.step(:t4, 'd');
INSERT INTO tasker.workflow_step_transitions (task_id, workflow_step_id, from_state, to_state, sort_key)
SELECT task_id, workflow_step_id, 'in_progress', 'complete', transitions
  FROM tasker.workflow_steps WHERE workflow_step_id = pg_temp.step(:t4, 'd');
SELECT * FROM pg_temp.violations();

-- invariants_hold says false, or raises data_corrupted
SELECT tasker.invariants_hold();
DO $$
BEGIN
    PERFORM tasker.invariants_hold(raise_error => true);
EXCEPTION WHEN data_corrupted THEN
    RAISE NOTICE 'SQLSTATE %: %', SQLSTATE, regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;
ROLLBACK;

-- Rolled back: all is well again.
SELECT * FROM tasker.check_invariants();
SELECT tasker.invariants_hold(raise_error => true);
