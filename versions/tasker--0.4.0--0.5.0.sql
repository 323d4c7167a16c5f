-- tasker 0.4.0 -> 0.5.0.  Every change made to src/sql since 0.4.0 is
-- repeated here; test/t/060_upgrade.pl fails when the result differs from a
-- fresh install of 0.5.0.
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.5.0'" to load this file. \quit

-- An executor's group of steps.  _lock_attempts locks, in ascending id,
-- the steps still in progress at the attempts claimed, before their
-- handlers run, and returns them (a step left out is stale: its handler is
-- not run), with whether each has children to release.  Holding the locks
-- until the group commits, the executor then records the completions of
-- every step whose handler succeeded in one _accept_completions, and
-- settles their children and tasks in one _settle_completions: a few
-- statements per group instead of several per step.
CREATE FUNCTION tasker._lock_attempts(p_step_ids bigint[], p_attempts integer[])
    RETURNS TABLE (step_id bigint, release boolean)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
BEGIN
    RETURN QUERY
    SELECT s.workflow_step_id, NOT s.children_released
      FROM unnest(p_step_ids, p_attempts) AS r(step_id, attempt)
      JOIN tasker.workflow_steps s ON s.workflow_step_id = r.step_id
     WHERE s.current_state = 'in_progress' AND s.attempts = r.attempt
     ORDER BY s.workflow_step_id
       FOR UPDATE OF s;
END $$;

-- _accept_completions records the completion of steps the caller locked
-- with _lock_attempts: p_step_ids[i] of task p_task_ids[i], with results
-- p_results[i].  (Called in the transaction that took the locks, not in a
-- subtransaction of it: a row locked by a transaction and updated by its
-- subtransaction gets a MultiXact, which every later reader of the row
-- looks up.)
CREATE FUNCTION tasker._accept_completions(p_task_ids bigint[], p_step_ids bigint[], p_results jsonb[])
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
BEGIN
    WITH done AS (
        UPDATE tasker.workflow_steps s
           SET current_state = 'complete', results = coalesce(d.result, '{}'),
               completed_at = now(), lease_expires_at = NULL, transitions = s.transitions + 1,
               children_released = true, updated_at = now()
          FROM unnest(p_task_ids, p_step_ids, p_results) AS d(task_id, step_id, result)
         WHERE s.task_id = d.task_id AND s.workflow_step_id = d.step_id
           AND s.current_state = 'in_progress'
        RETURNING s.task_id, s.workflow_step_id, s.transitions, s.attempts, s.claimed_by
    )
    INSERT INTO tasker.workflow_step_transitions
           (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
    SELECT d.task_id, d.workflow_step_id, 'in_progress', 'complete', d.transitions,
           jsonb_build_object('attempt', d.attempts, 'worker', d.claimed_by)
      FROM done d
     ORDER BY d.workflow_step_id;
END $$;

-- as 90_grants.sql: nothing for PUBLIC, new functions included
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tasker FROM PUBLIC;
