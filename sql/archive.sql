-- Retention: tasker.archive_tasks(older_than, batch_size, include_errors,
-- namespace) deletes one batch of finished tasks with their steps, edges
-- and history, and the maintained state counters follow.
SELECT tasker.register_template($$ {
  "namespace": "archive_test", "name": "pair", "version": "1.0.0",
  "steps": [
    {"name": "a", "queue": "archive_q"},
    {"name": "b", "queue": "archive_q", "depends_on": ["a"]}
  ]} $$) > 0 AS registered;

-- Nine tasks: five complete (one of them recently), one cancelled, one
-- failed for good, one still running, one not started.
SELECT count(tasker.create_task('archive_test', 'pair', context => jsonb_build_object('n', n)))
  FROM generate_series(1, 9) n;
CREATE TEMP TABLE archive_ids AS
SELECT (t.context ->> 'n')::integer AS n, t.task_id
  FROM tasker.tasks t JOIN tasker.templates tp USING (named_task_id)
 WHERE tp.namespace = 'archive_test';
DO $$
DECLARE
    c record;
BEGIN
    -- a of tasks 1-8, then b of tasks 1-5; task 7's a fails for good; 8 stays in progress
    FOR c IN SELECT * FROM tasker.claim_steps('archive_q', 'archiver', 8) LOOP
        IF (c.input #>> '{context,n}')::integer = 7 THEN
            PERFORM tasker.fail_step(c.step_id, c.attempt, '{"message": "no"}', false);
        ELSIF (c.input #>> '{context,n}')::integer <> 8 THEN
            PERFORM tasker.complete_step(c.step_id, c.attempt);
        END IF;
    END LOOP;
    FOR c IN SELECT * FROM tasker.claim_steps('archive_q', 'archiver', 6) LOOP
        IF (c.input #>> '{context,n}')::integer <= 5 THEN
            PERFORM tasker.complete_step(c.step_id, c.attempt);
        END IF;
    END LOOP;
END $$;
SELECT tasker.cancel_task(task_id, 'archive test') FROM archive_ids WHERE n = 6;
-- everything that finished did so two days ago, but task 5, just now
UPDATE tasker.tasks SET completed_at = completed_at - interval '2 days'
 WHERE task_id IN (SELECT task_id FROM archive_ids WHERE n <> 5) AND completed_at IS NOT NULL;
SELECT i.n, t.current_state, t.completed_at < now() - interval '1 day' AS old
  FROM archive_ids i JOIN tasker.tasks t USING (task_id) ORDER BY i.n;

-- The counters agree with a count before...
CREATE TEMP VIEW archive_counts_agree AS
SELECT (SELECT concat_ws(' ', h.pending_tasks, h.in_progress_tasks, h.complete_tasks, h.error_tasks,
                         h.cancelled_tasks, h.pending_steps, h.in_progress_steps, h.complete_steps,
                         h.error_steps, h.cancelled_steps)
          FROM tasker.system_health_counts() h)
     = (SELECT concat_ws(' ', t.pending, t.in_progress, t.complete, t.error, t.cancelled,
                         s.pending, s.in_progress, s.complete, s.error, s.cancelled)
          FROM (SELECT count(*) FILTER (WHERE current_state = 'pending') AS pending,
                       count(*) FILTER (WHERE current_state = 'in_progress') AS in_progress,
                       count(*) FILTER (WHERE current_state = 'complete') AS complete,
                       count(*) FILTER (WHERE current_state = 'error') AS error,
                       count(*) FILTER (WHERE current_state = 'cancelled') AS cancelled
                  FROM tasker.tasks) t,
               (SELECT count(*) FILTER (WHERE current_state = 'pending') AS pending,
                       count(*) FILTER (WHERE current_state = 'in_progress') AS in_progress,
                       count(*) FILTER (WHERE current_state = 'complete') AS complete,
                       count(*) FILTER (WHERE current_state = 'error') AS error,
                       count(*) FILTER (WHERE current_state = 'cancelled') AS cancelled
                  FROM tasker.workflow_steps) s) AS agree;
SELECT agree FROM archive_counts_agree;

-- One batch at a time, oldest first: five old finished tasks (1-4 complete,
-- 6 cancelled); 5 finished too recently, 7 failed, 8 and 9 are not done.
SELECT tasker.archive_tasks('1 day', 2, namespace => 'archive_test') AS batch_1;
SELECT tasker.archive_tasks('1 day', 2, namespace => 'archive_test') AS batch_2;
SELECT tasker.archive_tasks('1 day', 2, namespace => 'archive_test') AS batch_3;
SELECT tasker.archive_tasks('1 day', 2, namespace => 'archive_test') AS batch_4;
SELECT i.n, t.current_state FROM archive_ids i JOIN tasker.tasks t USING (task_id) ORDER BY i.n;
-- failed tasks only when asked
SELECT tasker.archive_tasks('1 day', include_errors => true, namespace => 'archive_test') AS with_errors;
-- a shorter interval takes the recent one too; the unfinished ones stay
SELECT tasker.archive_tasks('0', namespace => 'archive_test') AS recent;
SELECT i.n, t.current_state FROM archive_ids i JOIN tasker.tasks t USING (task_id) ORDER BY i.n;

-- Their steps, edges, transitions went with them; the rest is untouched.
SELECT (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_id IN (SELECT task_id FROM archive_ids)) AS steps,
       (SELECT count(*) FROM tasker.workflow_step_edges e WHERE e.task_id IN (SELECT task_id FROM archive_ids)) AS edges,
       (SELECT count(*) FROM tasker.task_transitions x WHERE x.task_id IN (SELECT task_id FROM archive_ids)) AS task_transitions,
       (SELECT count(*) FROM tasker.workflow_step_transitions x
         WHERE x.task_id IN (SELECT task_id FROM archive_ids)) AS step_transitions;
-- ...and after.
SELECT agree FROM archive_counts_agree;
SELECT count(*) AS invariant_violations FROM tasker.check_invariants();

-- The remaining tasks still work: 8 completes and is archived in turn.
SELECT tasker.complete_step(s.workflow_step_id, s.attempts)
  FROM tasker.workflow_steps s JOIN archive_ids i USING (task_id) WHERE i.n = 8 AND s.name = 'a';
SELECT tasker.complete_step(step_id, attempt) FROM tasker.claim_steps('archive_q', 'archiver', 5);
SELECT tasker.complete_step(step_id, attempt) FROM tasker.claim_steps('archive_q', 'archiver', 5);
SELECT tasker.archive_tasks('0', namespace => 'archive_test') AS last;
SELECT count(*) AS left_over FROM tasker.tasks WHERE task_id IN (SELECT task_id FROM archive_ids);
SELECT agree FROM archive_counts_agree;

-- Bad arguments.
SELECT tasker.archive_tasks('-1 day');
SELECT tasker.archive_tasks('1 day', 0);
SELECT tasker.archive_tasks('1 day', 100001);
SELECT tasker.archive_tasks(NULL);
SELECT tasker.archive_tasks('1 day', NULL);
SELECT tasker.archive_tasks('1 day', namespace => 'no_such_namespace');
-- an administrator's function: nothing for PUBLIC, nor for a submitter
SELECT has_function_privilege('public', 'tasker.archive_tasks(interval, integer, boolean, text)', 'EXECUTE')
    AS public_may;
CREATE ROLE archive_submitter;
SELECT tasker.grant_submitter('archive_submitter', 'archive_test');
SET ROLE archive_submitter;
SELECT tasker.archive_tasks('1 day');
RESET ROLE;
SELECT tasker.revoke_submitter('archive_submitter', 'archive_test');
DROP ROLE archive_submitter;
DROP VIEW archive_counts_agree;
