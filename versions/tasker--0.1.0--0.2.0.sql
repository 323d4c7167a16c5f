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

-- Batch completion finalizes its tasks in two statements instead of four per task.

CREATE FUNCTION tasker._finalize_tasks(p_task_ids bigint[]) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM tasker.tasks t
      WHERE t.task_id = ANY (p_task_ids)
      ORDER BY t.task_id
        FOR UPDATE;
    WITH counted AS (
        SELECT t.task_id, t.current_state AS state, c.unfinished, c.failed, c.runnable
          FROM tasker.tasks t
         CROSS JOIN LATERAL (
               SELECT count(*) FILTER (WHERE s.current_state IN ('pending', 'in_progress', 'waiting_for_retry')) AS unfinished,
                      count(*) FILTER (WHERE s.current_state = 'error' AND NOT s.skippable) AS failed,
                      count(*) FILTER (WHERE s.current_state = 'in_progress'
                                          OR (s.current_state IN ('pending', 'waiting_for_retry')
                                              AND s.pending_parents = 0)) AS runnable
                 FROM tasker.workflow_steps s WHERE s.task_id = t.task_id) c
         WHERE t.task_id = ANY (p_task_ids)
           AND t.current_state NOT IN ('complete', 'cancelled', 'resolved_manually')
    ), judged AS (
        SELECT c.*, CASE
                   WHEN c.unfinished = 0 AND c.failed = 0 THEN 'complete'
                   WHEN c.failed > 0 AND c.runnable = 0 THEN 'error'
                   WHEN c.state = 'error' THEN 'pending'
                   ELSE c.state
               END AS target
          FROM counted c
    ), moved AS (
        UPDATE tasker.tasks t
           SET current_state = j.target,
               transitions = t.transitions + 1,
               updated_at = now(),
               completed_at = CASE WHEN j.target IN ('complete', 'error', 'cancelled', 'resolved_manually')
                                   THEN now() END
          FROM judged j
         WHERE t.task_id = j.task_id AND j.target <> j.state AND t.current_state = j.state
        RETURNING t.task_id, t.transitions, j.state, j.target, j.unfinished, j.failed
    )
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, sort_key, metadata)
    SELECT m.task_id, m.state, m.target, m.transitions,
           jsonb_build_object('unfinished_steps', m.unfinished, 'failed_steps', m.failed)
      FROM moved m
     ORDER BY m.task_id;
END $$;

CREATE OR REPLACE FUNCTION tasker.complete_steps(step_ids bigint[], attempts integer[], results jsonb[] DEFAULT NULL)
    RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
            RETURNING c.pending_parents, c.current_state, c.handler, c.queue
        )
        SELECT array_agg(DISTINCT queue) FILTER (WHERE handler IS NULL),
               coalesce(bool_or(handler IS NOT NULL), false)
          INTO ready_queues, ready_sql
          FROM released
         WHERE pending_parents = 0 AND current_state = 'pending';
        PERFORM tasker._signal_ready(ready_queues, ready_sql);
    END IF;

    -- each task once, locked in ascending id
    PERFORM tasker._finalize_tasks(done_task_ids);
    RETURN cardinality(done_step_ids);
END $$;

-- The dispatcher counts ready SQL steps up to tasker.max_executors, not 1000.
CREATE OR REPLACE FUNCTION tasker._dispatcher_tick(live_executors text[], since timestamptz,
                                        housekeeping boolean, listed_at timestamptz,
                                        OUT ready integer, OUT next_due_ms double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q text;
BEGIN
    IF housekeeping THEN
        PERFORM tasker.reap_expired_leases();
        PERFORM tasker._recover_sql_steps(live_executors, listed_at);
    END IF;

    FOR q IN
        SELECT DISTINCT s.queue FROM tasker.workflow_steps s
         WHERE housekeeping AND s.handler IS NULL AND s.pending_parents = 0
           AND s.current_state = 'waiting_for_retry'
           AND s.next_attempt_at > since AND s.next_attempt_at <= now()
    LOOP
        PERFORM pg_notify('tasker_ready_' || q, q);
    END LOOP;

    SELECT count(*) INTO ready FROM (
        SELECT 1 FROM tasker.workflow_steps s
         WHERE s.handler IS NOT NULL AND s.pending_parents = 0
           AND s.current_state IN ('pending', 'waiting_for_retry')
           AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
           AND s.attempts < s.max_attempts
           AND (s.current_state = 'pending' OR s.retryable)
         LIMIT greatest(1, coalesce(current_setting('tasker.max_executors', true)::integer, 8))) r;

    SELECT extract(epoch FROM min(s.next_attempt_at) - now()) * 1000 INTO next_due_ms
      FROM tasker.workflow_steps s
     WHERE s.handler IS NOT NULL AND s.pending_parents = 0
       AND s.current_state = 'waiting_for_retry' AND s.next_attempt_at > now();
END $$;

-- create_task finds its edges' ends in a map of the steps it just created
-- (no join with them), and finalizes only a task with nothing pending.
CREATE OR REPLACE FUNCTION tasker.create_task(
    namespace text,
    name text,
    version text DEFAULT NULL,
    context jsonb DEFAULT '{}',
    initiator text DEFAULT NULL,
    source_system text DEFAULT NULL,
    reason text DEFAULT NULL,
    tags text[] DEFAULT '{}',
    bypass_steps text[] DEFAULT '{}',
    priority integer DEFAULT 0,
    idempotency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    pending_count bigint;
    step_map jsonb;
    template_id integer;
    strategy text;
    ctx_schema jsonb;
    problem text;
    unknown_steps text[];
    identity text;
    new_task_id bigint;
    step_count integer;
    ready_queues text[];
    ready_sql boolean;
BEGIN
    PERFORM tasker._authorize('submitter', namespace, 'namespace');
    template_id := tasker.find_template(namespace, name, version);
    PERFORM tasker._require(context, 'context');
    IF jsonb_typeof(context) <> 'object' THEN
        RAISE EXCEPTION 'context must be a JSON object, not %', jsonb_typeof(context)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tasker._check_size('tasker.max_context_size', context, 'context');
    tags := coalesce(tags, '{}');
    bypass_steps := coalesce(bypass_steps, '{}');
    priority := coalesce(priority, 0);
    IF array_position(tags, NULL) IS NOT NULL OR array_position(bypass_steps, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tags and bypass_steps must not contain nulls'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT t.identity_strategy, t.context_schema INTO strategy, ctx_schema
      FROM tasker.named_tasks t WHERE t.named_task_id = template_id;

    problem := tasker.context_violation(ctx_schema, context);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'context does not match the schema of template "%.%": %', namespace, name, problem
            USING ERRCODE = 'check_violation';
    END IF;

    SELECT array_agg(b ORDER BY b) INTO unknown_steps
      FROM unnest(bypass_steps) b
     WHERE NOT EXISTS (SELECT 1 FROM tasker.named_steps s
                        WHERE s.named_task_id = template_id AND s.name = b);
    IF unknown_steps IS NOT NULL THEN
        RAISE EXCEPTION 'bypass_steps names unknown step "%"', unknown_steps[1]
            USING ERRCODE = 'undefined_object',
                  DETAIL = format('Unknown: %s.', array_to_string(unknown_steps, ', '));
    END IF;

    -- identity: a caller's key always wins; strict hashes the request
    IF idempotency_key IS NOT NULL THEN
        identity := 'key:' || idempotency_key;
    ELSIF strategy = 'caller_provided' THEN
        RAISE EXCEPTION 'template "%.%" needs an idempotency_key', namespace, name
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'Its identity_strategy is caller_provided.';
    ELSIF strategy = 'strict' THEN
        identity := 'strict:' || md5(jsonb_build_array(context, initiator, source_system, reason,
            (SELECT coalesce(jsonb_agg(t ORDER BY t), '[]') FROM unnest(tags) t),
            (SELECT coalesce(jsonb_agg(b ORDER BY b), '[]') FROM unnest(bypass_steps) b))::text);
    END IF;

    INSERT INTO tasker.tasks (named_task_id, context, initiator, source_system, reason, tags,
                              bypass_steps, priority, identity_hash)
    VALUES (template_id, context, initiator, source_system, reason, tags, bypass_steps,
            priority, identity)
    ON CONFLICT (named_task_id, identity_hash) WHERE identity_hash IS NOT NULL DO NOTHING
    RETURNING task_id INTO new_task_id;

    IF new_task_id IS NULL THEN
        -- a duplicate: the task that holds this identity, no new rows
        SELECT t.task_id INTO new_task_id FROM tasker.tasks t
         WHERE t.named_task_id = template_id AND t.identity_hash = identity;
        RETURN new_task_id;
    END IF;

    -- steps in the template's dependency order, so a child's id is always
    -- greater than its parents' (every writer locks steps in id order)
    WITH created AS (
        INSERT INTO tasker.workflow_steps
               (task_id, named_step_id, name, current_state, handler, queue, priority,
                retryable, max_attempts, skippable, pending_parents, transitions, completed_at,
                children_released)
        SELECT new_task_id, s.named_step_id, s.name,
               CASE WHEN s.name = ANY (bypass_steps) THEN 'resolved_manually' ELSE 'pending' END,
               s.handler, s.queue, priority, s.retryable, s.max_attempts, s.skippable,
               (SELECT count(*) FROM tasker.named_step_edges e
                  JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
                 WHERE e.to_named_step_id = s.named_step_id AND p.name <> ALL (bypass_steps)),
               CASE WHEN s.name = ANY (bypass_steps) THEN 1 ELSE 0 END,
               CASE WHEN s.name = ANY (bypass_steps) THEN now() END,
               s.name = ANY (bypass_steps)
          FROM tasker.named_steps s
         WHERE s.named_task_id = template_id
         ORDER BY s.position
        RETURNING workflow_step_id, named_step_id, current_state, pending_parents, handler, queue
    ), bypassed AS (
        INSERT INTO tasker.workflow_step_transitions
               (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
        SELECT new_task_id, workflow_step_id, 'pending', 'resolved_manually', 1,
               '{"bypassed": true}'::jsonb
          FROM created WHERE current_state = 'resolved_manually'
    )
    SELECT count(*),
           count(*) FILTER (WHERE current_state = 'pending'),
           array_agg(DISTINCT queue) FILTER (WHERE handler IS NULL AND current_state = 'pending'
                                                 AND pending_parents = 0),
           coalesce(bool_or(handler IS NOT NULL AND current_state = 'pending'
                            AND pending_parents = 0), false),
           jsonb_object_agg(named_step_id::text, workflow_step_id)
      INTO step_count, pending_count, ready_queues, ready_sql, step_map
      FROM created;

    -- the edges, each end looked up in the map of the steps just created:
    -- no join with them (they have no statistics yet, and a plan made while
    -- the table was empty would scan it, once per task)
    INSERT INTO tasker.workflow_step_edges (task_id, from_step_id, to_step_id)
    SELECT new_task_id, (step_map ->> e.from_named_step_id::text)::bigint,
           (step_map ->> e.to_named_step_id::text)::bigint
      FROM tasker.named_step_edges e
     WHERE e.named_task_id = template_id;

    -- no steps, or every one bypassed: complete at once
    IF pending_count = 0 THEN
        PERFORM tasker._finalize_task(new_task_id);
    END IF;
    PERFORM tasker._signal_ready(ready_queues, ready_sql);
    RETURN new_task_id;
END $$;

-- The hot path never scans workflow_steps: a plan made while a table was
-- empty (after VACUUM) chose sequential scans and kept them.
ALTER FUNCTION tasker._claim(text, boolean, text, integer, interval) SET enable_seqscan = off;
ALTER FUNCTION tasker._claim_sql_steps(text, integer) SET enable_seqscan = off;
ALTER FUNCTION tasker.claim_steps(text, text, integer, interval) SET enable_seqscan = off;
ALTER FUNCTION tasker.complete_step(bigint, integer, jsonb) SET enable_seqscan = off;
ALTER FUNCTION tasker.complete_steps(bigint[], integer[], jsonb[]) SET enable_seqscan = off;
ALTER FUNCTION tasker.fail_step(bigint, integer, jsonb, boolean, integer) SET enable_seqscan = off;
ALTER FUNCTION tasker.extend_lease(bigint, integer, interval) SET enable_seqscan = off;

-- _finalize_task is _finalize_tasks for one task (one copy of the rules);
-- no caller used the state it returned.
DROP FUNCTION tasker._finalize_task(bigint);
CREATE FUNCTION tasker._finalize_task(p_task_id bigint) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker._finalize_tasks(ARRAY[p_task_id]);
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
