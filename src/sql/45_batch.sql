--------------------------------------------------------------------------
-- 45_batch.sql: completing many claimed steps in one call.
--
-- complete_steps is complete_step for a batch: each element is accepted or
-- skipped exactly as complete_step would accept it or return false (the
-- attempt is stale: reclaimed after its lease expired, cancelled, resolved),
-- but the batch costs a handful of statements instead of a handful per
-- step.  Lock order as everywhere: the steps in ascending id, then the
-- children they release in ascending id, then each task once, in
-- ascending id.
--------------------------------------------------------------------------

CREATE FUNCTION tasker.complete_steps(step_ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
    RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    n integer;
    missing bigint;
    done_task_ids bigint[];
    done_step_ids bigint[];
    done_results jsonb[];
    release_task_ids bigint[];
    release_step_ids bigint[];
    ready_queues text[];
    ready_sql boolean;
BEGIN
    PERFORM tasker._require(step_ids, 'step_ids');
    PERFORM tasker._require(attempts, 'attempts');
    n := coalesce(cardinality(step_ids), 0);
    IF cardinality(attempts) <> n OR (results IS NOT NULL AND cardinality(results) <> n) THEN
        RAISE EXCEPTION 'step_ids, attempts and results must have the same length'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('step_ids has %s elements, attempts %s, results %s.',
                                  n, cardinality(attempts), coalesce(cardinality(results)::text, 'none'));
    END IF;
    IF array_position(step_ids, NULL) IS NOT NULL OR array_position(attempts, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'step_ids and attempts must not contain nulls'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    PERFORM tasker._authorize_steps(step_ids);

    -- Lock every named step in ascending id, then keep, per step, the
    -- first element whose attempt is the step's current one (a repeated
    -- element after it would be stale, as a second complete_step is).
    WITH request AS (
        SELECT r.step_id, r.attempt, r.result, r.ord
          FROM unnest(step_ids, attempts, coalesce(results, array_fill(NULL::jsonb, ARRAY[n])))
               WITH ORDINALITY AS r(step_id, attempt, result, ord)
    ), locked AS (
        SELECT s.task_id, s.workflow_step_id, s.current_state, s.attempts, s.children_released
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_id = ANY (step_ids)
         ORDER BY s.workflow_step_id
           FOR UPDATE
    ), accepted AS (
        SELECT DISTINCT ON (l.workflow_step_id)
               l.task_id, l.workflow_step_id, l.children_released, r.result
          FROM locked l JOIN request r ON r.step_id = l.workflow_step_id
         WHERE l.current_state = 'in_progress' AND l.attempts = r.attempt
         ORDER BY l.workflow_step_id, r.ord
    )
    SELECT (SELECT min(r.step_id) FROM request r
             WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.workflow_step_id = r.step_id)),
           array_agg(a.task_id ORDER BY a.workflow_step_id),
           array_agg(a.workflow_step_id ORDER BY a.workflow_step_id),
           array_agg(a.result ORDER BY a.workflow_step_id),
           array_agg(a.task_id ORDER BY a.workflow_step_id) FILTER (WHERE NOT a.children_released),
           array_agg(a.workflow_step_id ORDER BY a.workflow_step_id) FILTER (WHERE NOT a.children_released)
      INTO missing, done_task_ids, done_step_ids, done_results, release_task_ids, release_step_ids
      FROM accepted a;

    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'step % does not exist', missing USING ERRCODE = 'undefined_object';
    END IF;
    IF results IS NOT NULL THEN
        PERFORM tasker._check_size('tasker.max_results_size', r.result, 'results of step ' || r.id)
           FROM unnest(step_ids, results) AS r(id, result);
    END IF;
    IF done_step_ids IS NULL THEN
        RETURN 0;                   -- every element stale: nothing changed
    END IF;

    -- the steps are locked above: recorded as an executor's group records them
    PERFORM tasker._accept_completions(done_task_ids, done_step_ids, done_results);
    PERFORM tasker._settle_completions(done_task_ids, release_task_ids, release_step_ids);
    RETURN cardinality(done_step_ids);
END $$;
COMMENT ON FUNCTION tasker.complete_steps(bigint[], integer[], jsonb[]) IS
    'Completes a batch of claimed attempts (step_ids[i] at attempts[i] with results[i]) as complete_step would, skipping stale ones; returns how many were accepted.';

-- _settle_completions does, for steps just completed in this transaction,
-- what follows the steps themselves: it releases the children of
-- release_step_ids (each of task release_task_ids[i]), locked in ascending
-- id and decremented once per completed parent, signals the children that
-- became ready, and finalizes each task of task_ids once, in ascending id —
-- except a task in which a child became ready: it still has work.
-- complete_steps calls it for its batch; an executor once per group, after
-- the group's handlers, so that the children's and tasks' locks are held
-- only until the commit that follows, not through the rest of the group.
CREATE FUNCTION tasker._settle_completions(task_ids bigint[], release_task_ids bigint[],
                                           release_step_ids bigint[]) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    ready_queues text[];
    ready_sql boolean;
    busy_task_ids bigint[];
BEGIN
    IF release_step_ids IS NOT NULL THEN
        -- children of the completed steps, locked in ascending id, each
        -- decremented once per completed parent
        WITH edges AS (
            SELECT e.task_id, e.to_step_id, count(*)::integer AS parents_done
              FROM unnest(release_task_ids, release_step_ids) AS p(task_id, step_id)
              JOIN tasker.workflow_step_edges e
                ON e.task_id = p.task_id AND e.from_step_id = p.step_id
             GROUP BY e.task_id, e.to_step_id
        ), children AS (
            SELECT c.task_id, c.workflow_step_id, e.parents_done
              FROM (SELECT c.task_id, c.workflow_step_id
                      FROM tasker.workflow_steps c
                     WHERE (c.task_id, c.workflow_step_id) IN (SELECT task_id, to_step_id FROM edges)
                     ORDER BY c.workflow_step_id
                       FOR UPDATE) c
              JOIN edges e ON e.task_id = c.task_id AND e.to_step_id = c.workflow_step_id
        ), released AS (
            UPDATE tasker.workflow_steps c
               SET pending_parents = c.pending_parents - ch.parents_done
              FROM children ch
             WHERE c.task_id = ch.task_id AND c.workflow_step_id = ch.workflow_step_id
            RETURNING c.task_id, c.pending_parents, c.current_state, c.handler, c.queue
        )
        SELECT array_agg(DISTINCT queue) FILTER (WHERE handler IS NULL),
               coalesce(bool_or(handler IS NOT NULL), false),
               array_agg(DISTINCT task_id)
          INTO ready_queues, ready_sql, busy_task_ids
          FROM released
         WHERE pending_parents = 0 AND current_state = 'pending';
        PERFORM tasker._signal_ready(ready_queues, ready_sql);
    END IF;

    -- each task once, locked in ascending id
    task_ids := ARRAY(SELECT DISTINCT t FROM unnest(task_ids) t
                       WHERE t <> ALL (coalesce(busy_task_ids, '{}')));
    IF cardinality(task_ids) > 0 THEN
        PERFORM tasker._finalize_tasks(task_ids);
    END IF;
END $$;

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
-- (an executor with _lock_attempts, complete_steps itself): p_step_ids[i]
-- of task p_task_ids[i], with results p_results[i].  (An executor calls it
-- in the transaction that took the locks, not in a subtransaction of it: a
-- row locked by a transaction and updated by its subtransaction gets a
-- MultiXact, which every later reader of the row looks up.)
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
