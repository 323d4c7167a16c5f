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

-- complete_steps records its batch with _accept_completions
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

    -- the steps are locked above: recorded as an executor's group records them
    PERFORM tasker._accept_completions(done_task_ids, done_step_ids, done_results);
    PERFORM tasker._settle_completions(done_task_ids, release_task_ids, release_step_ids);
    RETURN cardinality(done_step_ids);
END $$;

-- _strict_identity is a request's identity under the 'strict' strategy:
-- a hash of everything the caller asked for (tags and bypassed steps in
-- sorted order).  create_task and create_tasks both take it from here.
CREATE FUNCTION tasker._strict_identity(context jsonb, initiator text, source_system text,
                                        reason text, tags text[], bypass_steps text[])
    RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'strict:' || md5(jsonb_build_array(context, initiator, source_system, reason,
        (SELECT coalesce(jsonb_agg(t ORDER BY t), '[]') FROM unnest(tags) t),
        (SELECT coalesce(jsonb_agg(b ORDER BY b), '[]') FROM unnest(bypass_steps) b))::text)
$$;


-- create_task takes its strict identity from _strict_identity
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
        identity := tasker._strict_identity(context, initiator, source_system, reason, tags,
                                            bypass_steps);
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

-- create_tasks creates one task per context, as create_task would with the
-- same template, version, priority and idempotency key (and no initiator,
-- source, reason, tags or bypassed steps), in a few statements for the
-- whole batch: returns the ids in the order of the contexts — for a
-- duplicate identity the existing task's, as create_task returns it.
CREATE FUNCTION tasker.create_tasks(
    namespace text,
    name text,
    contexts jsonb[],
    version text DEFAULT NULL,
    priority integer DEFAULT 0,
    idempotency_keys text[] DEFAULT NULL)
    RETURNS bigint[] LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    template_id integer;
    strategy text;
    ctx_schema jsonb;
    problem text;
    n integer;
    i integer;
    identities text[];
    new_ids bigint[];
    inserted_ids bigint[];
    step_count integer;
    ready_queues text[];
    ready_sql boolean;
    result bigint[];
BEGIN
    PERFORM tasker._authorize('submitter', namespace, 'namespace');
    template_id := tasker.find_template(namespace, name, version);
    PERFORM tasker._require(contexts, 'contexts');
    -- (flattened, as unnest reads them: element i is contexts[i] and
    -- idempotency_keys[i] whatever bounds or dimensions the caller gave)
    contexts := ARRAY(SELECT c FROM unnest(contexts) c);
    idempotency_keys := CASE WHEN idempotency_keys IS NOT NULL
                             THEN ARRAY(SELECT k FROM unnest(idempotency_keys) k) END;
    priority := coalesce(priority, 0);
    n := coalesce(cardinality(contexts), 0);
    IF n > 10000 THEN
        RAISE EXCEPTION 'contexts may hold at most 10000 contexts, not %', n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF idempotency_keys IS NOT NULL AND cardinality(idempotency_keys) <> n THEN
        RAISE EXCEPTION 'contexts and idempotency_keys must have the same length'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('contexts has %s elements, idempotency_keys %s.',
                                  n, cardinality(idempotency_keys));
    END IF;
    IF n = 0 THEN
        RETURN '{}';
    END IF;

    SELECT t.identity_strategy, t.context_schema INTO strategy, ctx_schema
      FROM tasker.named_tasks t WHERE t.named_task_id = template_id;
    identities := array_fill(NULL::text, ARRAY[n]);
    FOR i IN 1 .. n LOOP
        IF contexts[i] IS NULL THEN
            RAISE EXCEPTION 'contexts[%] must not be null', i USING ERRCODE = 'null_value_not_allowed';
        END IF;
        IF jsonb_typeof(contexts[i]) <> 'object' THEN
            RAISE EXCEPTION 'contexts[%] must be a JSON object, not %', i, jsonb_typeof(contexts[i])
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM tasker._check_size('tasker.max_context_size', contexts[i], format('contexts[%s]', i));
        problem := tasker.context_violation(ctx_schema, contexts[i]);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'contexts[%] does not match the schema of template "%.%": %', i, namespace, name, problem
                USING ERRCODE = 'check_violation';
        END IF;
        -- identity, as create_task computes it
        IF idempotency_keys[i] IS NOT NULL THEN
            identities[i] := 'key:' || idempotency_keys[i];
        ELSIF strategy = 'caller_provided' THEN
            RAISE EXCEPTION 'template "%.%" needs an idempotency_key (contexts[%] has none)', namespace, name, i
                USING ERRCODE = 'null_value_not_allowed',
                      DETAIL = 'Its identity_strategy is caller_provided.';
        ELSIF strategy = 'strict' THEN
            identities[i] := tasker._strict_identity(contexts[i], NULL, NULL, NULL, '{}', '{}');
        END IF;
    END LOOP;

    -- ids drawn first, in the order of the contexts, so that each context
    -- knows its task; a duplicate identity leaves its id unused
    new_ids := ARRAY(SELECT nextval(pg_get_serial_sequence('tasker.tasks', 'task_id'))
                       FROM generate_series(1, n));
    WITH inserted AS (
        INSERT INTO tasker.tasks (task_id, named_task_id, context, priority, identity_hash)
        OVERRIDING SYSTEM VALUE
        SELECT r.task_id, template_id, r.context, priority, r.identity
          FROM unnest(new_ids, contexts, identities) WITH ORDINALITY AS r(task_id, context, identity, ord)
         -- identities in one order for every caller: two batches naming the
         -- same keys wait for each other, never in a circle
         ORDER BY r.identity, r.ord
        ON CONFLICT (named_task_id, identity_hash) WHERE identity_hash IS NOT NULL DO NOTHING
        RETURNING task_id
    )
    SELECT array_agg(task_id ORDER BY task_id) INTO inserted_ids FROM inserted;

    IF inserted_ids IS NOT NULL THEN
        -- steps task by task in the template's dependency order, so a child's
        -- id is always greater than its parents' (every writer locks steps
        -- in id order); the edges join the steps just created, not the table
        WITH template_steps AS (
            SELECT s.named_step_id, s.name, s.handler, s.queue, s.retryable, s.max_attempts,
                   s.skippable, s.position,
                   (SELECT count(*) FROM tasker.named_step_edges e
                     WHERE e.to_named_step_id = s.named_step_id) AS parents
              FROM tasker.named_steps s
             WHERE s.named_task_id = template_id
        ), created AS (
            INSERT INTO tasker.workflow_steps
                   (task_id, named_step_id, name, handler, queue, priority, retryable,
                    max_attempts, skippable, pending_parents)
            SELECT t.task_id, s.named_step_id, s.name, s.handler, s.queue, priority, s.retryable,
                   s.max_attempts, s.skippable, s.parents
              FROM unnest(inserted_ids) AS t(task_id)
             CROSS JOIN template_steps s
             ORDER BY t.task_id, s.position
            RETURNING task_id, named_step_id, workflow_step_id
        )
        INSERT INTO tasker.workflow_step_edges (task_id, from_step_id, to_step_id)
        SELECT f.task_id, f.workflow_step_id, c.workflow_step_id
          FROM tasker.named_step_edges e
          JOIN created f ON f.named_step_id = e.from_named_step_id
          JOIN created c ON c.named_step_id = e.to_named_step_id AND c.task_id = f.task_id
         WHERE e.named_task_id = template_id;

        SELECT count(*),
               array_agg(DISTINCT s.queue) FILTER (WHERE s.handler IS NULL AND NOT EXISTS (
                   SELECT 1 FROM tasker.named_step_edges e WHERE e.to_named_step_id = s.named_step_id)),
               coalesce(bool_or(s.handler IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM tasker.named_step_edges e WHERE e.to_named_step_id = s.named_step_id)), false)
          INTO step_count, ready_queues, ready_sql
          FROM tasker.named_steps s WHERE s.named_task_id = template_id;
        -- a template without steps: every task complete at once
        IF step_count = 0 THEN
            PERFORM tasker._finalize_tasks(inserted_ids);
        END IF;
        PERFORM tasker._signal_ready(ready_queues, ready_sql);
    END IF;

    -- each context's task: the one created for it, or the one holding its identity
    SELECT array_agg(CASE WHEN r.task_id = ANY (inserted_ids) THEN r.task_id
                          ELSE (SELECT d.task_id FROM tasker.tasks d
                                 WHERE d.named_task_id = template_id AND d.identity_hash = r.identity)
                     END ORDER BY r.ord) INTO result
      FROM unnest(new_ids, identities) WITH ORDINALITY AS r(task_id, identity, ord);
    RETURN result;
END $$;
COMMENT ON FUNCTION tasker.create_tasks(text, text, jsonb[], text, integer, text[]) IS
    'Creates a task per context (of a template, newest version by default) in one call; returns their ids in order, the existing one for a duplicate identity.';

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

-- submitters may execute create_tasks: the list, and every role's privileges
CREATE OR REPLACE FUNCTION tasker._granted_functions(kind text) RETURNS text[]
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind
        WHEN 'submitter' THEN ARRAY[
            'register_template', 'register_template_yaml', 'yaml_template', 'yaml_to_jsonb',
            'context_violation', 'find_template', 'create_task', 'create_tasks', 'cancel_task',
            'task_steps', 'task_history', 'step_transitions', 'task_graph', 'explain_task',
            'task_execution_context', 'task_execution_contexts', 'dependency_levels',
            'template_graph', 'template_dependency_levels',
            'state_machine', 'transition_allowed',
            -- what a SQL handler registered by the submitter (run as it) may raise
            'fail_permanently', 'retry_after']
        WHEN 'worker' THEN ARRAY[
            'claim_steps', 'complete_step', 'complete_steps', 'fail_step', 'extend_lease',
            'step_handler']
    END
$$;


SELECT tasker._sync_privileges(g.role) FROM (SELECT DISTINCT role FROM tasker.grants) g;

-- as 90_grants.sql: nothing for PUBLIC, new functions included
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tasker FROM PUBLIC;
