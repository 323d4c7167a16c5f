--------------------------------------------------------------------------
-- 80_invariants.sql: what must always hold of the schema's rows, checked
-- from scratch — for tests (the fuzz test ends with it), after a restore,
-- an upgrade or a crash, or whenever an operator doubts the data.
--
-- Every check reads only committed rows plus the caller's own changes, in
-- one snapshot (the functions are STABLE), so it can run while workers
-- work.  It reads every task, step, edge and transition: on a large
-- database, run it off-peak.
--------------------------------------------------------------------------

CREATE FUNCTION tasker.check_invariants()
    RETURNS TABLE (invariant text, detail text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bad record;
    names text[];
    ids bigint[];
    edge_from integer[];
    edge_to integer[];
BEGIN
    -- States agree with the audit trail ---------------------------------
    -- A row's current_state is the to_state of its last transition; a row
    -- without transitions is pending (a step bypassed at creation has one,
    -- pending -> resolved_manually).  Transitions are numbered 1..n without
    -- gaps, the row's transitions counter is n, each starts where the
    -- previous one ended (the first from pending), and each is a legal move.
    RETURN QUERY
    WITH log AS (
        SELECT tr.task_id, count(*) AS n, min(tr.sort_key) AS lo, max(tr.sort_key) AS hi,
               (array_agg(tr.to_state ORDER BY tr.sort_key DESC))[1] AS last_state
          FROM tasker.task_transitions tr GROUP BY tr.task_id
    )
    SELECT v.invariant, v.detail FROM (
        SELECT 'task_state_matches_transitions' AS invariant, t.task_id AS id,
               format('task %s is %s, its last transition is to %s', t.task_id, t.current_state,
                      coalesce(l.last_state, 'none (so it must be pending)')) AS detail
          FROM tasker.tasks t LEFT JOIN log l USING (task_id)
         WHERE t.current_state IS DISTINCT FROM coalesce(l.last_state, 'pending')
        UNION ALL
        SELECT 'task_transitions_numbered', t.task_id,
               format('task %s has %s transitions numbered %s to %s', t.task_id, l.n, l.lo, l.hi)
          FROM tasker.tasks t JOIN log l USING (task_id)
         WHERE l.lo <> 1 OR l.hi <> l.n
        UNION ALL
        SELECT 'task_transition_counter', t.task_id,
               format('task %s counts %s transitions, the log has %s', t.task_id, t.transitions,
                      coalesce(l.n, 0))
          FROM tasker.tasks t LEFT JOIN log l USING (task_id)
         WHERE t.transitions <> coalesce(l.n, 0)
    ) v ORDER BY 1, v.id;

    RETURN QUERY
    WITH log AS (
        SELECT tr.task_id, tr.workflow_step_id, count(*) AS n, min(tr.sort_key) AS lo,
               max(tr.sort_key) AS hi,
               (array_agg(tr.to_state ORDER BY tr.sort_key DESC))[1] AS last_state
          FROM tasker.workflow_step_transitions tr GROUP BY tr.task_id, tr.workflow_step_id
    )
    SELECT v.invariant, v.detail FROM (
        SELECT 'step_state_matches_transitions' AS invariant, s.workflow_step_id AS id,
               format('step %s (task %s) is %s, its last transition is to %s', s.workflow_step_id,
                      s.task_id, s.current_state,
                      coalesce(l.last_state, 'none (so it must be pending)')) AS detail
          FROM tasker.workflow_steps s LEFT JOIN log l USING (task_id, workflow_step_id)
         WHERE s.current_state IS DISTINCT FROM coalesce(l.last_state, 'pending')
        UNION ALL
        SELECT 'step_transitions_numbered', s.workflow_step_id,
               format('step %s (task %s) has %s transitions numbered %s to %s', s.workflow_step_id,
                      s.task_id, l.n, l.lo, l.hi)
          FROM tasker.workflow_steps s JOIN log l USING (task_id, workflow_step_id)
         WHERE l.lo <> 1 OR l.hi <> l.n
        UNION ALL
        SELECT 'step_transition_counter', s.workflow_step_id,
               format('step %s (task %s) counts %s transitions, the log has %s', s.workflow_step_id,
                      s.task_id, s.transitions, coalesce(l.n, 0))
          FROM tasker.workflow_steps s LEFT JOIN log l USING (task_id, workflow_step_id)
         WHERE s.transitions <> coalesce(l.n, 0)
    ) v ORDER BY 1, v.id;

    RETURN QUERY
    SELECT v.invariant, v.detail FROM (
        SELECT 'task_transition_chain' AS invariant, c.task_id AS id, c.sort_key,
               format('task %s transition %s goes %s -> %s after a transition to %s',
                      c.task_id, c.sort_key, coalesce(c.from_state, 'null'), c.to_state,
                      coalesce(c.prev, 'nothing (so it must start from pending)')) AS detail
          FROM (SELECT tr.*, lag(tr.to_state) OVER (PARTITION BY tr.task_id ORDER BY tr.sort_key) AS prev
                  FROM tasker.task_transitions tr) c
         WHERE c.from_state IS DISTINCT FROM coalesce(c.prev, 'pending')
            OR NOT tasker.transition_allowed('task', c.from_state, c.to_state)
        UNION ALL
        SELECT 'step_transition_chain', c.workflow_step_id, c.sort_key,
               format('step %s (task %s) transition %s goes %s -> %s after a transition to %s',
                      c.workflow_step_id, c.task_id, c.sort_key, coalesce(c.from_state, 'null'),
                      c.to_state, coalesce(c.prev, 'nothing (so it must start from pending)'))
          FROM (SELECT tr.*, lag(tr.to_state) OVER (PARTITION BY tr.task_id, tr.workflow_step_id
                                                    ORDER BY tr.sort_key) AS prev
                  FROM tasker.workflow_step_transitions tr) c
         WHERE c.from_state IS DISTINCT FROM coalesce(c.prev, 'pending')
            OR NOT tasker.transition_allowed('step', c.from_state, c.to_state)
    ) v ORDER BY 1, v.id, v.sort_key;

    -- The hot path's bookkeeping agrees with the steps' states --------------
    -- A parent is done for its children when it is complete or
    -- resolved_manually, or skippable and failed for good (a skipped step
    -- keeps its children released if it is retried later) — the rule of
    -- step_readiness_status.  pending_parents counts the parents not done;
    -- children_released is set exactly when a step became done for its
    -- children.
    RETURN QUERY
    WITH parents AS (
        SELECT c.task_id, c.workflow_step_id, c.pending_parents,
               count(p.workflow_step_id) FILTER (WHERE NOT (
                   p.current_state IN ('complete', 'resolved_manually')
                   OR (p.skippable AND (p.current_state = 'error' OR p.children_released)))) AS not_done
          FROM tasker.workflow_steps c
          LEFT JOIN tasker.workflow_step_edges e
                 ON e.task_id = c.task_id AND e.to_step_id = c.workflow_step_id
          LEFT JOIN tasker.workflow_steps p
                 ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
         GROUP BY c.task_id, c.workflow_step_id, c.pending_parents
    )
    SELECT 'pending_parents', format('step %s (task %s) has pending_parents %s, but %s parents are not done',
                                     x.workflow_step_id, x.task_id, x.pending_parents, x.not_done)
      FROM parents x
     WHERE x.pending_parents <> x.not_done
     ORDER BY x.workflow_step_id;

    RETURN QUERY
    SELECT 'children_released',
           format('step %s (task %s) is %s%s with children_released %s', s.workflow_step_id, s.task_id,
                  CASE WHEN s.skippable THEN 'skippable and ' ELSE '' END, s.current_state,
                  s.children_released)
      FROM tasker.workflow_steps s
     WHERE s.children_released IS DISTINCT FROM (
               s.current_state IN ('complete', 'resolved_manually')
               OR (s.skippable AND s.current_state = 'error')
               -- a skipped step, retried or cancelled since
               OR (s.skippable AND s.children_released AND EXISTS (
                       SELECT 1 FROM tasker.workflow_step_transitions tr
                        WHERE tr.task_id = s.task_id AND tr.workflow_step_id = s.workflow_step_id
                          AND tr.metadata @> '{"skipped": true}')))
     ORDER BY s.workflow_step_id;

    -- The maintained state counters agree with a full count ------------------
    RETURN QUERY
    WITH maintained AS (
        SELECT ARRAY[sum(c.tasks_pending), sum(c.tasks_in_progress), sum(c.tasks_complete),
                     sum(c.tasks_error), sum(c.tasks_cancelled), sum(c.tasks_resolved_manually),
                     sum(c.steps_pending), sum(c.steps_in_progress), sum(c.steps_waiting_for_retry),
                     sum(c.steps_complete), sum(c.steps_error), sum(c.steps_exhausted),
                     sum(c.steps_cancelled), sum(c.steps_resolved_manually)]::bigint[] AS v
          FROM tasker.state_counts c
    ), counted AS (
        SELECT t.v || s.v AS v
          FROM (SELECT ARRAY[count(*) FILTER (WHERE current_state = 'pending'),
                             count(*) FILTER (WHERE current_state = 'in_progress'),
                             count(*) FILTER (WHERE current_state = 'complete'),
                             count(*) FILTER (WHERE current_state = 'error'),
                             count(*) FILTER (WHERE current_state = 'cancelled'),
                             count(*) FILTER (WHERE current_state = 'resolved_manually')] AS v
                  FROM tasker.tasks) t,
               (SELECT ARRAY[count(*) FILTER (WHERE current_state = 'pending'),
                             count(*) FILTER (WHERE current_state = 'in_progress'),
                             count(*) FILTER (WHERE current_state = 'waiting_for_retry'),
                             count(*) FILTER (WHERE current_state = 'complete'),
                             count(*) FILTER (WHERE current_state = 'error'),
                             count(*) FILTER (WHERE current_state = 'error' AND attempts >= max_attempts),
                             count(*) FILTER (WHERE current_state = 'cancelled'),
                             count(*) FILTER (WHERE current_state = 'resolved_manually')] AS v
                  FROM tasker.workflow_steps) s
    )
    SELECT 'state_counts', format('%s: the counters say %s, a count finds %s', k.name,
                                  coalesce(m.v[k.i], 0) + u.v[k.i], c.v[k.i])
      FROM maintained m, counted c,
           (SELECT tasker._unflushed_state_counts() AS v) u,
           unnest(ARRAY['tasks_pending', 'tasks_in_progress', 'tasks_complete', 'tasks_error',
                        'tasks_cancelled', 'tasks_resolved_manually', 'steps_pending',
                        'steps_in_progress', 'steps_waiting_for_retry', 'steps_complete',
                        'steps_error', 'steps_exhausted', 'steps_cancelled',
                        'steps_resolved_manually']) WITH ORDINALITY AS k(name, i)
     WHERE coalesce(m.v[k.i], 0) + u.v[k.i] <> c.v[k.i]
     ORDER BY k.i;

    -- The DAGs ---------------------------------------------------------------
    -- No edge crosses tasks (or templates); every edge goes from a lower id
    -- (template position) to a higher one — the lock order relies on it, and
    -- it rules out cycles; where it does not hold, the DAG is searched for
    -- a cycle.
    RETURN QUERY
    SELECT v.invariant, v.detail FROM (
        SELECT 'edge_within_task' AS invariant, e.from_step_id AS id,
               format('edge %s -> %s of task %s joins steps of tasks %s and %s', e.from_step_id,
                      e.to_step_id, e.task_id, coalesce(p.task_id::text, 'none'),
                      coalesce(c.task_id::text, 'none')) AS detail
          FROM tasker.workflow_step_edges e
          LEFT JOIN tasker.workflow_steps p ON p.workflow_step_id = e.from_step_id
          LEFT JOIN tasker.workflow_steps c ON c.workflow_step_id = e.to_step_id
         WHERE p.task_id IS DISTINCT FROM e.task_id OR c.task_id IS DISTINCT FROM e.task_id
        UNION ALL
        SELECT 'edge_within_template', e.from_named_step_id,
               format('template edge %s -> %s of template %s joins steps of templates %s and %s',
                      e.from_named_step_id, e.to_named_step_id, e.named_task_id,
                      coalesce(p.named_task_id::text, 'none'), coalesce(c.named_task_id::text, 'none'))
          FROM tasker.named_step_edges e
          LEFT JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
          LEFT JOIN tasker.named_steps c ON c.named_step_id = e.to_named_step_id
         WHERE p.named_task_id IS DISTINCT FROM e.named_task_id
            OR c.named_task_id IS DISTINCT FROM e.named_task_id
        UNION ALL
        SELECT 'edge_order', e.from_step_id,
               format('edge %s -> %s of task %s goes from a higher step id to a lower one',
                      e.from_step_id, e.to_step_id, e.task_id)
          FROM tasker.workflow_step_edges e
         WHERE e.from_step_id > e.to_step_id
        UNION ALL
        SELECT 'edge_order', p.position,
               format('template edge %s -> %s of template %s goes from position %s to position %s',
                      p.name, c.name, e.named_task_id, p.position, c.position)
          FROM tasker.named_step_edges e
          JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
          JOIN tasker.named_steps c ON c.named_step_id = e.to_named_step_id
         WHERE p.position >= c.position
    ) v ORDER BY 1, v.id, v.detail;

    FOR bad IN
        SELECT DISTINCT 'task' AS kind, e.task_id AS id FROM tasker.workflow_step_edges e
         WHERE e.from_step_id > e.to_step_id
        UNION
        SELECT DISTINCT 'template', e.named_task_id FROM tasker.named_step_edges e
          JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
          JOIN tasker.named_steps c ON c.named_step_id = e.to_named_step_id
         WHERE p.position >= c.position
         ORDER BY 1, 2
    LOOP
        IF bad.kind = 'task' THEN
            SELECT array_agg(s.name ORDER BY s.workflow_step_id),
                   array_agg(s.workflow_step_id ORDER BY s.workflow_step_id)
              INTO names, ids
              FROM tasker.workflow_steps s WHERE s.task_id = bad.id;
            SELECT array_agg(array_position(ids, e.from_step_id)),
                   array_agg(array_position(ids, e.to_step_id))
              INTO edge_from, edge_to
              FROM tasker.workflow_step_edges e WHERE e.task_id = bad.id;
        ELSE
            SELECT array_agg(s.name ORDER BY s.position),
                   array_agg(s.named_step_id::bigint ORDER BY s.position)
              INTO names, ids
              FROM tasker.named_steps s WHERE s.named_task_id = bad.id;
            SELECT array_agg(array_position(ids, e.from_named_step_id::bigint)),
                   array_agg(array_position(ids, e.to_named_step_id::bigint))
              INTO edge_from, edge_to
              FROM tasker.named_step_edges e WHERE e.named_task_id = bad.id;
        END IF;
        BEGIN
            PERFORM tasker._topological_order(names, edge_from, edge_to);
        EXCEPTION WHEN invalid_object_definition THEN
            invariant := 'acyclic';
            detail := format('%s %s: %s', bad.kind, bad.id, SQLERRM);
            RETURN NEXT;
        END;
    END LOOP;

    -- Task states agree with their steps -----------------------------------
    -- A finished task (complete, cancelled, resolved_manually) has no step
    -- that still runs or waits; a complete one only complete,
    -- resolved_manually or skipped steps; a task in error a step failed for
    -- good that is not skippable and nothing that can run; a pending or
    -- in-progress task is neither done nor stuck (_finalize_task would
    -- leave it as it is).  "Can run": in progress, or pending or waiting for
    -- a retry with every parent done.
    RETURN QUERY
    WITH steps AS (
        SELECT s.task_id, s.current_state, s.skippable,
               s.current_state = 'in_progress'
               OR (s.current_state IN ('pending', 'waiting_for_retry') AND NOT EXISTS (
                       SELECT 1 FROM tasker.workflow_step_edges e
                         JOIN tasker.workflow_steps p
                           ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
                        WHERE e.task_id = s.task_id AND e.to_step_id = s.workflow_step_id
                          AND NOT (p.current_state IN ('complete', 'resolved_manually')
                                   OR (p.skippable AND (p.current_state = 'error'
                                                        OR p.children_released))))) AS runnable
          FROM tasker.workflow_steps s
    ), per_task AS (
        SELECT t.task_id, t.current_state,
               count(s.task_id) FILTER (WHERE s.current_state IN ('pending', 'in_progress', 'waiting_for_retry')) AS unfinished,
               count(s.task_id) FILTER (WHERE s.current_state = 'error' AND NOT s.skippable) AS failed,
               count(s.task_id) FILTER (WHERE s.current_state NOT IN ('complete', 'resolved_manually')
                                          AND NOT (s.current_state = 'error' AND s.skippable)) AS not_done,
               count(s.task_id) FILTER (WHERE s.runnable) AS runnable
          FROM tasker.tasks t LEFT JOIN steps s USING (task_id)
         GROUP BY t.task_id, t.current_state
    )
    SELECT v.invariant, v.detail FROM (
        SELECT 'finished_task_steps' AS invariant, x.task_id AS id,
               format('task %s is %s, but %s of its steps are pending, in progress or waiting for a retry',
                      x.task_id, x.current_state, x.unfinished) AS detail
          FROM per_task x
         WHERE x.current_state IN ('complete', 'cancelled', 'resolved_manually') AND x.unfinished > 0
        UNION ALL
        SELECT 'complete_task_steps', x.task_id,
               format('task %s is complete, but %s of its steps are not complete, resolved or skipped',
                      x.task_id, x.not_done)
          FROM per_task x
         WHERE x.current_state = 'complete' AND x.not_done > 0
        UNION ALL
        SELECT 'error_task_steps', x.task_id,
               format('task %s is in error with %s steps failed for good (not skippable) and %s that can run',
                      x.task_id, x.failed, x.runnable)
          FROM per_task x
         WHERE x.current_state = 'error' AND (x.failed = 0 OR x.runnable > 0)
        UNION ALL
        SELECT 'unfinished_task_steps', x.task_id,
               format('task %s is %s, but %s', x.task_id, x.current_state,
                      CASE WHEN x.failed = 0 THEN 'every step is done (it should be complete)'
                           ELSE format('%s steps failed for good and none can run (it should be in error)',
                                       x.failed) END)
          FROM per_task x
         WHERE x.current_state IN ('pending', 'in_progress')
           AND ((x.unfinished = 0 AND x.failed = 0) OR (x.failed > 0 AND x.runnable = 0))
    ) v ORDER BY 1, v.id;
END $$;
COMMENT ON FUNCTION tasker.check_invariants() IS
    'Checks every invariant of the schema (states vs transitions, transition numbering and counters, pending_parents and children_released vs the parents'' states, the state counters vs a full count, edges within one task, no cycles, task states vs their steps); one row per violation, none when all hold.';

CREATE FUNCTION tasker.invariants_hold(raise_error boolean DEFAULT false) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    violations text[];
BEGIN
    SELECT array_agg(v.invariant || ': ' || v.detail) INTO violations
      FROM tasker.check_invariants() v;
    IF violations IS NULL THEN
        RETURN true;
    END IF;
    IF raise_error THEN
        RAISE EXCEPTION 'tasker invariant violated: %', violations[1]
            USING ERRCODE = 'data_corrupted',
                  DETAIL = format('%s violation(s): %s', cardinality(violations),
                                  array_to_string(violations[1:20], '; ')),
                  HINT = 'SELECT * FROM tasker.check_invariants() lists them all.';
    END IF;
    RETURN false;
END $$;
COMMENT ON FUNCTION tasker.invariants_hold(boolean) IS
    'Whether tasker.check_invariants() finds nothing; with raise_error, a violation raises XX001 (data_corrupted) naming the first ones.';
