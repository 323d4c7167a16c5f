-- tasker 0.2.0 -> 0.3.0.  Every change made to src/sql since 0.2.0 is
-- repeated here; test/t/060_upgrade.pl fails when the result differs from a
-- fresh install of 0.3.0.
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.3.0'" to load this file. \quit

-- The functions the workers call on a timer keep their plans for the life
-- of the worker: plans made on small tables must not scan them later.
ALTER FUNCTION tasker._dispatcher_tick(text[], timestamptz, boolean, timestamptz) SET enable_seqscan = off;
ALTER FUNCTION tasker.reap_expired_leases() SET enable_seqscan = off;
ALTER FUNCTION tasker._recover_sql_steps(text[], timestamptz) SET enable_seqscan = off;

-- Completing is split in two: _accept_completion touches the step only,
-- _settle_completions releases children and finalizes tasks for many
-- completed steps at once (executors call it once per group, just before
-- the commit; complete_steps for its batch).
CREATE FUNCTION tasker._accept_completion(p_step_id bigint, p_attempt integer, p_results jsonb,
                                          OUT task_id bigint, OUT release boolean)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    step tasker.workflow_steps;
BEGIN
    PERFORM tasker._check_size('tasker.max_results_size', p_results, 'results of step ' || p_step_id);
    step := tasker._lock_attempt(p_step_id, p_attempt);
    IF step.workflow_step_id IS NULL THEN
        RETURN;                     -- stale: reclaimed, cancelled or resolved
    END IF;
    UPDATE tasker.workflow_steps s
       SET current_state = 'complete', results = coalesce(p_results, '{}'),
           completed_at = now(), lease_expires_at = NULL, transitions = s.transitions + 1,
           children_released = true, updated_at = now()
     WHERE s.task_id = step.task_id AND s.workflow_step_id = step.workflow_step_id;
    INSERT INTO tasker.workflow_step_transitions
           (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
    VALUES (step.task_id, step.workflow_step_id, 'in_progress', 'complete', step.transitions + 1,
            jsonb_build_object('attempt', step.attempts, 'worker', step.claimed_by));
    task_id := step.task_id;
    release := NOT step.children_released;
END $$;

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

CREATE OR REPLACE FUNCTION tasker.complete_step(step_id bigint, attempt integer, results jsonb DEFAULT '{}')
    RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    accepted record;
BEGIN
    PERFORM tasker._authorize_step(step_id);
    accepted := tasker._accept_completion(step_id, attempt, results);
    IF accepted.task_id IS NULL THEN
        RETURN false;               -- stale: reclaimed, cancelled or resolved
    END IF;
    -- a child that became ready means the task still has work: no need to
    -- take the task's lock to finalize it
    IF NOT accepted.release
       OR NOT tasker._release_children(accepted.task_id, step_id) THEN
        PERFORM tasker._finalize_task(accepted.task_id);
    END IF;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION tasker.complete_steps(step_ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
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

    WITH done AS (
        UPDATE tasker.workflow_steps s
           SET current_state = 'complete', results = coalesce(d.result, '{}'),
               completed_at = now(), lease_expires_at = NULL, transitions = s.transitions + 1,
               children_released = true, updated_at = now()
          FROM unnest(done_task_ids, done_step_ids, done_results) AS d(task_id, step_id, result)
         WHERE s.task_id = d.task_id AND s.workflow_step_id = d.step_id
        RETURNING s.task_id, s.workflow_step_id, s.transitions, s.attempts, s.claimed_by
    )
    INSERT INTO tasker.workflow_step_transitions
           (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
    SELECT d.task_id, d.workflow_step_id, 'in_progress', 'complete', d.transitions,
           jsonb_build_object('attempt', d.attempts, 'worker', d.claimed_by)
      FROM done d
     ORDER BY d.workflow_step_id;

    PERFORM tasker._settle_completions(done_task_ids, release_task_ids, release_step_ids);
    RETURN cardinality(done_step_ids);
END $$;

-- as 85_security.sql: CREATE OR REPLACE resets SECURITY DEFINER; every API
-- function gets it back, with its pinned search_path
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = 'tasker'::regnamespace AND p.prokind = 'f'
                 AND p.proname !~ '^_' AND p.proname <> ALL (tasker._invoker_functions())
               ORDER BY p.oid LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', fn);
    END LOOP;
END $$;

-- as 90_grants.sql: nothing for PUBLIC, new functions included
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tasker FROM PUBLIC;
