--------------------------------------------------------------------------
-- 40_steps.sql: running steps — claim, complete, fail, lease — and the
-- operator's moves: cancel, resolve, retry.
--
-- Lock order, everywhere: step rows in ascending id (children have greater
-- ids than their parents), then the task row.  That keeps concurrent
-- completions, claims and cancellations free of deadlocks.
--------------------------------------------------------------------------

-- _claim is the hot path shared by the external and the in-database
-- claims: it locks up to p_max ready steps (FOR UPDATE SKIP LOCKED, in
-- priority then age order) and moves them to in_progress.  The readiness
-- test is spelled out once per kind of step, so that each spelling matches
-- its partial index under the generic plan it is given; the tests compare
-- it with step_readiness_status.  Generic plans are forced: left to itself,
-- the plan cache judged the custom plans cheaper and planned the claim
-- afresh at every call, half of its cost.
CREATE FUNCTION tasker._claim(p_queue text, p_sql_steps boolean, p_worker text,
                              p_max integer, p_lease interval)
    RETURNS TABLE (step_id bigint, task_id bigint, step_name text, attempt integer,
                   input jsonb, lease_expires_at timestamptz, handler regprocedure,
                   named_step_id integer)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
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

CREATE FUNCTION tasker.claim_steps(queue text, worker text, max_steps integer DEFAULT 1,
                                   lease interval DEFAULT NULL)
    RETURNS TABLE (step_id bigint, task_id bigint, step_name text, attempt integer,
                   input jsonb, lease_expires_at timestamptz)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
BEGIN
    PERFORM tasker._authorize('worker', queue, 'queue');
    PERFORM tasker._require(queue, 'queue');
    PERFORM tasker._require(worker, 'worker');
    PERFORM tasker._require(max_steps, 'max_steps');
    IF max_steps < 1 OR max_steps > 10000 THEN
        RAISE EXCEPTION 'max_steps must be between 1 and 10000, not %', max_steps
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (missing_ok: a session that has not loaded the library yet has no
    -- tasker.* settings, only what postgresql.conf placed)
    lease := coalesce(lease, current_setting('tasker.default_lease', true)::interval,
                      interval '300 seconds');
    IF lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be positive, not %', lease
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT c.step_id, c.task_id, c.step_name, c.attempt, c.input, c.lease_expires_at
      FROM tasker._claim(queue, false, worker, max_steps, lease) c;
END $$;
COMMENT ON FUNCTION tasker.claim_steps(text, text, integer, interval) IS
    'Claims up to max_steps ready external steps of a queue (FOR UPDATE SKIP LOCKED), moving them to in_progress under a lease.';

-- _lock_attempt locks a step and returns it when it is in progress at the
-- given attempt; NULL when the attempt is stale; 42704 when no such step.
CREATE FUNCTION tasker._lock_attempt(p_step_id bigint, p_attempt integer)
    RETURNS tasker.workflow_steps LANGUAGE plpgsql AS $$
DECLARE
    step tasker.workflow_steps;
BEGIN
    PERFORM tasker._require(p_step_id, 'step_id');
    PERFORM tasker._require(p_attempt, 'attempt');
    SELECT * INTO step FROM tasker.workflow_steps WHERE workflow_step_id = p_step_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'step % does not exist', p_step_id USING ERRCODE = 'undefined_object';
    END IF;
    IF step.current_state <> 'in_progress' OR step.attempts <> p_attempt THEN
        RETURN NULL;
    END IF;
    RETURN step;
END $$;

-- _accept_completion is the part of completing a claimed attempt that
-- touches only the step: it locks the step, records its results and its
-- transition to complete, and returns the step's task and whether its
-- children still have to be released (task_id NULL: the attempt is stale).
-- The children and the task are left to the caller: complete_step releases
-- them at once, an executor once per group of steps (_settle_completions).
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

CREATE FUNCTION tasker.complete_step(step_id bigint, attempt integer, results jsonb DEFAULT '{}')
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
COMMENT ON FUNCTION tasker.complete_step(bigint, integer, jsonb) IS
    'Records a claimed attempt''s results and completes the step; false (nothing changed) when the attempt is stale.';

-- _record_failure moves a locked in-progress step to waiting_for_retry or
-- error and returns the new state.
CREATE FUNCTION tasker._record_failure(step tasker.workflow_steps, p_error jsonb, p_retryable boolean,
                                       p_backoff_seconds integer, p_cause text)
    RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_state text;
    retry_at timestamptz;
    skipped boolean;
BEGIN
    IF p_backoff_seconds IS NOT NULL AND p_backoff_seconds < 0 THEN
        RAISE EXCEPTION 'backoff_seconds must not be negative, not %', p_backoff_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(p_retryable, true) AND step.retryable AND step.attempts < step.max_attempts THEN
        new_state := 'waiting_for_retry';
        retry_at := now() + make_interval(secs => tasker.backoff_seconds(step.attempts, p_backoff_seconds));
    ELSE
        new_state := 'error';
    END IF;
    skipped := new_state = 'error' AND step.skippable;

    UPDATE tasker.workflow_steps s
       SET current_state = new_state, error = coalesce(p_error, '{}'), last_failure_at = now(),
           next_attempt_at = retry_at, backoff_request_seconds = p_backoff_seconds,
           lease_expires_at = NULL, transitions = s.transitions + 1, updated_at = now(),
           completed_at = CASE WHEN new_state = 'error' THEN now() END,
           children_released = s.children_released OR skipped
     WHERE s.task_id = step.task_id AND s.workflow_step_id = step.workflow_step_id;
    INSERT INTO tasker.workflow_step_transitions
           (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
    VALUES (step.task_id, step.workflow_step_id, step.current_state, new_state, step.transitions + 1,
            jsonb_strip_nulls(jsonb_build_object(
                'attempt', step.attempts, 'worker', step.claimed_by, 'cause', p_cause,
                'error', p_error, 'retryable', coalesce(p_retryable, true) AND step.retryable,
                'next_attempt_at', retry_at, 'skipped', CASE WHEN skipped THEN true END)));
    IF skipped AND NOT step.children_released THEN
        -- a skippable step that failed for good counts as done for its children
        PERFORM tasker._release_children(step.task_id, step.workflow_step_id);
    END IF;
    PERFORM tasker._finalize_task(step.task_id);
    IF new_state = 'waiting_for_retry' AND step.handler IS NOT NULL THEN
        PERFORM tasker._wake_dispatcher();
    END IF;
    RETURN new_state;
END $$;

CREATE FUNCTION tasker.fail_step(step_id bigint, attempt integer, error jsonb DEFAULT '{}',
                                 retryable boolean DEFAULT true, backoff_seconds integer DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    step tasker.workflow_steps;
BEGIN
    PERFORM tasker._authorize_step(step_id);
    PERFORM tasker._check_size('tasker.max_results_size', error, 'error of step ' || step_id);
    step := tasker._lock_attempt(step_id, attempt);
    IF step.workflow_step_id IS NULL THEN
        RETURN NULL;                -- stale: nothing changed
    END IF;
    RETURN tasker._record_failure(step, error, retryable, backoff_seconds, 'failed');
END $$;
COMMENT ON FUNCTION tasker.fail_step(bigint, integer, jsonb, boolean, integer) IS
    'Records a failed attempt: waiting_for_retry (with next_attempt_at) or error; NULL when the attempt is stale.';

CREATE FUNCTION tasker.extend_lease(step_id bigint, attempt integer, lease interval)
    RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    step tasker.workflow_steps;
    expires timestamptz;
BEGIN
    PERFORM tasker._authorize_step(step_id);
    PERFORM tasker._require(lease, 'lease');
    IF lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be positive, not %', lease USING ERRCODE = 'invalid_parameter_value';
    END IF;
    step := tasker._lock_attempt(step_id, attempt);
    IF step.workflow_step_id IS NULL THEN
        RETURN NULL;                -- stale: stop working on it
    END IF;
    UPDATE tasker.workflow_steps s SET lease_expires_at = now() + lease, updated_at = now()
     WHERE s.task_id = step.task_id AND s.workflow_step_id = step.workflow_step_id
    RETURNING s.lease_expires_at INTO expires;
    RETURN expires;
END $$;
COMMENT ON FUNCTION tasker.extend_lease(bigint, integer, interval) IS
    'Heartbeat: pushes a claimed attempt''s lease to now() + lease; NULL when the attempt is stale.';

CREATE FUNCTION tasker.reap_expired_leases() RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    step tasker.workflow_steps;
    reaped integer := 0;
BEGIN
    PERFORM tasker._authorize('admin', '', NULL);
    FOR step IN
        SELECT * FROM tasker.workflow_steps
         WHERE current_state = 'in_progress' AND lease_expires_at < now()
         -- "+ 0": the primary key cannot supply this order, so no plan
         -- walks all of it to avoid a sort (a plan made while the table was
         -- empty did, and the dispatcher keeps its plans for its life)
         ORDER BY task_id + 0, workflow_step_id
           FOR UPDATE SKIP LOCKED
    LOOP
        -- one step that cannot be recorded (a failing user trigger, a full
        -- disk) must not keep every other lease from being reaped
        BEGIN
            PERFORM tasker._record_failure(step,
                jsonb_build_object('message', 'lease expired', 'lease_expires_at', step.lease_expires_at),
                true, NULL, 'lease_expired');
            reaped := reaped + 1;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'could not reap the expired lease of step %: %', step.workflow_step_id, SQLERRM
                USING ERRCODE = SQLSTATE;
        END;
    END LOOP;
    RETURN reaped;
END $$;
COMMENT ON FUNCTION tasker.reap_expired_leases() IS
    'Counts every in-progress step whose lease has expired as a failed attempt; returns how many.';

-- Operator moves ---------------------------------------------------------

-- _lock_task_steps locks every step of a task in id order, then the task.
CREATE FUNCTION tasker._lock_task(p_task_id bigint) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    state text;
BEGIN
    PERFORM tasker._require(p_task_id, 'task_id');
    PERFORM 1 FROM tasker.workflow_steps WHERE task_id = p_task_id
     ORDER BY workflow_step_id FOR UPDATE;
    SELECT current_state INTO state FROM tasker.tasks WHERE task_id = p_task_id FOR UPDATE;
    IF state IS NULL THEN
        RAISE EXCEPTION 'task % does not exist', p_task_id USING ERRCODE = 'undefined_object';
    END IF;
    RETURN state;
END $$;

CREATE FUNCTION tasker.cancel_task(task_id bigint, reason text DEFAULT NULL) RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    state text;
    cancelled integer;
BEGIN
    PERFORM tasker._authorize_task(task_id, 'task_id');
    state := tasker._lock_task(task_id);
    IF state NOT IN ('pending', 'in_progress', 'error') THEN
        RAISE EXCEPTION 'task % is already %', task_id, state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only pending, in_progress and error tasks can be cancelled.';
    END IF;
    WITH moved AS (
        UPDATE tasker.workflow_steps s
           SET current_state = 'cancelled', lease_expires_at = NULL,
               transitions = s.transitions + 1, updated_at = now(), completed_at = now()
          FROM tasker.workflow_steps old
         WHERE s.task_id = cancel_task.task_id AND old.task_id = s.task_id
           AND old.workflow_step_id = s.workflow_step_id
           AND s.current_state IN ('pending', 'in_progress', 'waiting_for_retry', 'error')
        RETURNING s.task_id, s.workflow_step_id, old.current_state AS from_state, s.transitions
    ), logged AS (
        INSERT INTO tasker.workflow_step_transitions
               (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
        SELECT m.task_id, m.workflow_step_id, m.from_state, 'cancelled', m.transitions,
               jsonb_strip_nulls(jsonb_build_object('reason', reason))
          FROM moved m
        RETURNING 1
    )
    SELECT count(*) INTO cancelled FROM logged;
    PERFORM tasker._move_task(task_id, state, 'cancelled',
                              jsonb_strip_nulls(jsonb_build_object('reason', reason)));
    RETURN cancelled;
END $$;
COMMENT ON FUNCTION tasker.cancel_task(bigint, text) IS
    'Cancels a task and its unfinished steps (in-flight attempts become stale); returns how many steps were cancelled.';

CREATE FUNCTION tasker.resolve_step(step_id bigint, results jsonb DEFAULT NULL, reason text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    step tasker.workflow_steps;
    task_state text;
BEGIN
    PERFORM tasker._authorize('admin', '', NULL);
    PERFORM tasker._require(step_id, 'step_id');
    PERFORM tasker._check_size('tasker.max_results_size', results, 'results of step ' || step_id);
    SELECT * INTO step FROM tasker.workflow_steps WHERE workflow_step_id = step_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'step % does not exist', step_id USING ERRCODE = 'undefined_object';
    END IF;
    SELECT current_state INTO task_state FROM tasker.tasks t WHERE t.task_id = step.task_id;
    IF task_state IN ('complete', 'cancelled', 'resolved_manually') THEN
        RAISE EXCEPTION 'step % belongs to task %, which is already %', step_id, step.task_id, task_state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT tasker.transition_allowed('step', step.current_state, 'resolved_manually') THEN
        RAISE EXCEPTION 'step % is already %', step_id, step.current_state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only pending, in_progress, waiting_for_retry and error steps can be resolved.';
    END IF;
    UPDATE tasker.workflow_steps s
       SET current_state = 'resolved_manually', results = coalesce(resolve_step.results, s.results),
           lease_expires_at = NULL, next_attempt_at = NULL, transitions = s.transitions + 1,
           children_released = true, updated_at = now(), completed_at = now()
     WHERE s.task_id = step.task_id AND s.workflow_step_id = step.workflow_step_id;
    INSERT INTO tasker.workflow_step_transitions
           (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
    VALUES (step.task_id, step.workflow_step_id, step.current_state, 'resolved_manually',
            step.transitions + 1, jsonb_strip_nulls(jsonb_build_object('reason', reason)));
    IF NOT step.children_released THEN
        PERFORM tasker._release_children(step.task_id, step.workflow_step_id);
    END IF;
    PERFORM tasker._finalize_task(step.task_id);
    RETURN 'resolved_manually';
END $$;
COMMENT ON FUNCTION tasker.resolve_step(bigint, jsonb, text) IS
    'Marks a step resolved_manually (with optional results its children will see); its children may run.';

-- _retry_locked gives a locked step in error a fresh set of attempts.
CREATE FUNCTION tasker._retry_locked(step tasker.workflow_steps) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- attempts keep counting (they fence stale workers); the limit moves up
    UPDATE tasker.workflow_steps s
       SET current_state = 'pending',
           max_attempts = s.attempts + (SELECT n.max_attempts FROM tasker.named_steps n
                                         WHERE n.named_step_id = s.named_step_id),
           next_attempt_at = NULL, backoff_request_seconds = NULL, completed_at = NULL,
           transitions = s.transitions + 1, updated_at = now()
     WHERE s.task_id = step.task_id AND s.workflow_step_id = step.workflow_step_id;
    INSERT INTO tasker.workflow_step_transitions
           (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
    VALUES (step.task_id, step.workflow_step_id, 'error', 'pending', step.transitions + 1,
            jsonb_build_object('retry', true, 'previous_error', step.error));
    IF step.pending_parents = 0 THEN
        PERFORM tasker._signal_ready(CASE WHEN step.handler IS NULL THEN ARRAY[step.queue] END,
                                     step.handler IS NOT NULL);
    END IF;
END $$;

CREATE FUNCTION tasker.retry_step(step_id bigint) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    step tasker.workflow_steps;
    task_state text;
BEGIN
    PERFORM tasker._authorize('admin', '', NULL);
    PERFORM tasker._require(step_id, 'step_id');
    SELECT * INTO step FROM tasker.workflow_steps WHERE workflow_step_id = step_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'step % does not exist', step_id USING ERRCODE = 'undefined_object';
    END IF;
    IF step.current_state <> 'error' THEN
        RAISE EXCEPTION 'step % is %, not error', step_id, step.current_state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only steps that failed permanently can be retried.';
    END IF;
    SELECT current_state INTO task_state FROM tasker.tasks t WHERE t.task_id = step.task_id;
    IF task_state IN ('complete', 'cancelled', 'resolved_manually') THEN
        RAISE EXCEPTION 'step % belongs to task %, which is already %', step_id, step.task_id, task_state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM tasker._retry_locked(step);
    PERFORM tasker._finalize_task(step.task_id);
    RETURN 'pending';
END $$;
COMMENT ON FUNCTION tasker.retry_step(bigint) IS
    'Gives a permanently failed step a fresh set of attempts (state pending).';

CREATE FUNCTION tasker.retry_task(task_id bigint) RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    state text;
    step tasker.workflow_steps;
    retried integer := 0;
BEGIN
    PERFORM tasker._authorize('admin', '', NULL);
    state := tasker._lock_task(task_id);
    IF state IN ('complete', 'cancelled', 'resolved_manually') THEN
        RAISE EXCEPTION 'task % is already %', task_id, state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR step IN SELECT * FROM tasker.workflow_steps s
                 WHERE s.task_id = retry_task.task_id AND s.current_state = 'error'
                 ORDER BY s.workflow_step_id LOOP
        PERFORM tasker._retry_locked(step);
        retried := retried + 1;
    END LOOP;
    IF retried = 0 THEN
        RAISE EXCEPTION 'task % has no failed steps', task_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM tasker._finalize_task(task_id);
    RETURN retried;
END $$;
COMMENT ON FUNCTION tasker.retry_task(bigint) IS
    'Retries every permanently failed step of a task; returns how many.';
