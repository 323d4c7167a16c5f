-- tasker 0.1.0 -> 0.2.0.  Every change made to src/sql since 0.1.0 is
-- repeated here; test/t/060_upgrade.pl fails when the result differs from a
-- fresh install of 0.2.0.
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.2.0'" to load this file. \quit

-- Claims: generic plans forced (they were planned afresh at every call), the
-- input document built in the claim's own query, the executors' claim in
-- PL/pgSQL so that its plan is kept.

CREATE OR REPLACE FUNCTION tasker._claim(p_queue text, p_sql_steps boolean, p_worker text,
                              p_max integer, p_lease interval)
    RETURNS TABLE (step_id bigint, task_id bigint, step_name text, attempt integer,
                   input jsonb, lease_expires_at timestamptz, handler regprocedure,
                   named_step_id integer)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    step_ids bigint[];
    task_ids bigint[];
    from_states text[];
BEGIN
    IF p_sql_steps THEN
        SELECT array_agg(c.workflow_step_id), array_agg(c.task_id), array_agg(c.current_state)
          INTO step_ids, task_ids, from_states
          FROM (SELECT s.task_id, s.workflow_step_id, s.current_state
                  FROM tasker.workflow_steps s
                 WHERE s.handler IS NOT NULL
                   AND s.pending_parents = 0
                   AND s.current_state IN ('pending', 'waiting_for_retry')
                   AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
                   AND s.attempts < s.max_attempts
                   AND (s.current_state = 'pending' OR s.retryable)
                 ORDER BY s.priority DESC, s.task_id, s.workflow_step_id
                 LIMIT p_max
                   FOR UPDATE SKIP LOCKED) c;
    ELSE
        SELECT array_agg(c.workflow_step_id), array_agg(c.task_id), array_agg(c.current_state)
          INTO step_ids, task_ids, from_states
          FROM (SELECT s.task_id, s.workflow_step_id, s.current_state
                  FROM tasker.workflow_steps s
                 WHERE s.handler IS NULL AND s.queue = p_queue
                   AND s.pending_parents = 0
                   AND s.current_state IN ('pending', 'waiting_for_retry')
                   AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
                   -- a first attempt (pending: never run, or given a fresh set
                   -- of attempts by retry_step), or a retry of a retryable step
                   AND s.attempts < s.max_attempts
                   AND (s.current_state = 'pending' OR s.retryable)
                 ORDER BY s.priority DESC, s.task_id, s.workflow_step_id
                 LIMIT p_max
                   FOR UPDATE SKIP LOCKED) c;
    END IF;
    IF step_ids IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH candidates AS (
        SELECT u.task_id, u.workflow_step_id, u.from_state
          FROM unnest(task_ids, step_ids, from_states) AS u(task_id, workflow_step_id, from_state)
    ), claimed AS (
        UPDATE tasker.workflow_steps s
           SET current_state = 'in_progress',
               attempts = s.attempts + 1,
               last_attempted_at = now(),
               lease_expires_at = now() + p_lease,
               claimed_by = p_worker,
               next_attempt_at = NULL,
               transitions = s.transitions + 1,
               updated_at = now()
          FROM candidates c
         WHERE s.task_id = c.task_id AND s.workflow_step_id = c.workflow_step_id
        RETURNING s.task_id, s.workflow_step_id, s.name, s.attempts, s.transitions,
                  s.lease_expires_at, s.handler, s.named_step_id, c.from_state
    ), logged AS (
        INSERT INTO tasker.workflow_step_transitions
               (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
        SELECT c.task_id, c.workflow_step_id, c.from_state, 'in_progress', c.transitions,
               jsonb_build_object('attempt', c.attempts, 'worker', p_worker)
          FROM claimed c
    ), started AS (
        -- the tasks this claim starts, locked in ascending id like every
        -- writer that locks several tasks (complete_steps, other claims):
        -- two claims that start the same tasks wait, never deadlock
        UPDATE tasker.tasks t
           SET current_state = 'in_progress', transitions = t.transitions + 1, updated_at = now()
          FROM (SELECT p.task_id FROM tasker.tasks p
                 WHERE p.task_id IN (SELECT c.task_id FROM claimed c) AND p.current_state = 'pending'
                 ORDER BY p.task_id
                   FOR UPDATE) l
         WHERE t.task_id = l.task_id AND t.current_state = 'pending'
        RETURNING t.task_id, t.transitions
    ), started_logged AS (
        INSERT INTO tasker.task_transitions (task_id, from_state, to_state, sort_key)
        SELECT st.task_id, 'pending', 'in_progress', st.transitions FROM started st
    )
    -- input: the document a handler or an external worker receives
    SELECT c.workflow_step_id, c.task_id, c.name, c.attempts,
           jsonb_build_object('task_id', c.task_id, 'step_id', c.workflow_step_id,
                              'step_name', c.name, 'attempt', c.attempts, 'context', t.context,
                              'dependencies', coalesce(d.results, '{}'::jsonb)),
           c.lease_expires_at, c.handler, c.named_step_id
      FROM claimed c JOIN tasker.tasks t ON t.task_id = c.task_id
      LEFT JOIN LATERAL (
           SELECT jsonb_object_agg(p.name, coalesce(p.results, '{}'::jsonb)) AS results
             FROM tasker.workflow_step_edges e
             JOIN tasker.workflow_steps p
               ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
            WHERE e.task_id = c.task_id AND e.to_step_id = c.workflow_step_id) d ON true
     ORDER BY c.task_id, c.workflow_step_id;
END $$;

DROP FUNCTION tasker._step_input(bigint, bigint, text, integer, jsonb);

CREATE OR REPLACE FUNCTION tasker._claim_sql_steps(worker text, max_steps integer)
    RETURNS TABLE (step_id bigint, task_id bigint, step_name text, attempt integer, input jsonb,
                   handler oid, owner_role oid, timeout_ms bigint, handler_owner oid)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT c.step_id, c.task_id, c.step_name, c.attempt, c.input, c.handler::oid,
           t.owner_role::oid,
           (extract(epoch FROM n.timeout) * 1000)::bigint, n.handler_owner::oid
      FROM tasker._claim(NULL, true, worker, max_steps,
                         current_setting('tasker.default_lease')::interval) c
      JOIN tasker.named_steps n ON n.named_step_id = c.named_step_id
      JOIN tasker.named_tasks t ON t.named_task_id = n.named_task_id;
END $$;
