--------------------------------------------------------------------------
-- 30_tasks.sql: creating tasks (identity strategies, bypass) and reading
-- their history.
--------------------------------------------------------------------------

-- find_template returns the named_task_id of namespace.name at version, or
-- the newest version when version is NULL; raises 42704 when there is none.
CREATE FUNCTION tasker.find_template(namespace text, name text, version text DEFAULT NULL)
    RETURNS integer LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id integer;
BEGIN
    PERFORM tasker._authorize('submitter', namespace, 'namespace');
    PERFORM tasker._require(namespace, 'namespace');
    PERFORM tasker._require(name, 'name');
    SELECT t.named_task_id INTO id
      FROM tasker.named_tasks t JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = find_template.namespace AND t.name = find_template.name
       AND (find_template.version IS NULL OR t.version = find_template.version)
     ORDER BY t.version_order DESC
     LIMIT 1;
    IF id IS NULL THEN
        IF version IS NULL THEN
            RAISE EXCEPTION 'task template "%.%" does not exist', namespace, name
                USING ERRCODE = 'undefined_object',
                      HINT = 'Register it with tasker.register_template(); tasker.templates lists what is registered.';
        END IF;
        RAISE EXCEPTION 'task template "%.%" has no version "%"', namespace, name, version
            USING ERRCODE = 'undefined_object',
                  HINT = 'tasker.templates lists the registered versions.';
    END IF;
    RETURN id;
END $$;
COMMENT ON FUNCTION tasker.find_template(text, text, text) IS
    'The id of a registered template version (the newest when version is NULL).';

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

-- _check_bypass_steps raises 42704 when bypass_steps names a step the
-- template does not have (create_task and create_tasks both check here).
CREATE FUNCTION tasker._check_bypass_steps(template_id integer, bypass_steps text[])
    RETURNS void LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown_steps text[];
BEGIN
    SELECT array_agg(b ORDER BY b) INTO unknown_steps
      FROM unnest(bypass_steps) b
     WHERE NOT EXISTS (SELECT 1 FROM tasker.named_steps s
                        WHERE s.named_task_id = template_id AND s.name = b);
    IF unknown_steps IS NOT NULL THEN
        RAISE EXCEPTION 'bypass_steps names unknown step "%"', unknown_steps[1]
            USING ERRCODE = 'undefined_object',
                  DETAIL = format('Unknown: %s.', array_to_string(unknown_steps, ', '));
    END IF;
END $$;

CREATE FUNCTION tasker.create_task(
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

    PERFORM tasker._check_bypass_steps(template_id, bypass_steps);

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
COMMENT ON FUNCTION tasker.create_task(text, text, text, jsonb, text, text, text, text[], text[], integer, text) IS
    'Creates a task of a template (newest version by default) with its steps and edges; returns its id, or the existing one for a duplicate identity.';

-- create_tasks creates one task per context, as create_task would with the
-- same template, version, priority, idempotency key, initiator, source,
-- reason, tags and bypassed steps (all but the contexts and keys shared by
-- the batch), in a few statements for the whole batch: returns the ids in
-- the order of the contexts — for a duplicate identity the existing
-- task's, as create_task returns it.
CREATE FUNCTION tasker.create_tasks(
    namespace text,
    name text,
    contexts jsonb[],
    version text DEFAULT NULL,
    priority integer DEFAULT 0,
    idempotency_keys text[] DEFAULT NULL,
    initiator text DEFAULT NULL,
    source_system text DEFAULT NULL,
    reason text DEFAULT NULL,
    tags text[] DEFAULT '{}',
    bypass_steps text[] DEFAULT '{}')
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
    pending_count integer;
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
    tags := coalesce(tags, '{}');
    bypass_steps := coalesce(bypass_steps, '{}');
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
    IF array_position(tags, NULL) IS NOT NULL OR array_position(bypass_steps, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tags and bypass_steps must not contain nulls'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM tasker._check_bypass_steps(template_id, bypass_steps);
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
            identities[i] := tasker._strict_identity(contexts[i], initiator, source_system, reason,
                                                     tags, bypass_steps);
        END IF;
    END LOOP;

    -- ids drawn first, in the order of the contexts, so that each context
    -- knows its task; a duplicate identity leaves its id unused
    new_ids := ARRAY(SELECT nextval(pg_get_serial_sequence('tasker.tasks', 'task_id'))
                       FROM generate_series(1, n));
    WITH inserted AS (
        INSERT INTO tasker.tasks (task_id, named_task_id, context, initiator, source_system, reason,
                                  tags, bypass_steps, priority, identity_hash)
        OVERRIDING SYSTEM VALUE
        SELECT r.task_id, template_id, r.context, initiator, source_system, reason, tags,
               bypass_steps, priority, r.identity
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
        -- in id order); the edges join the steps just created, not the table.
        -- A bypassed step starts resolved_manually and is no parent to wait for.
        WITH template_steps AS (
            SELECT s.named_step_id, s.name, s.handler, s.queue, s.retryable, s.max_attempts,
                   s.skippable, s.position, s.name = ANY (bypass_steps) AS bypassed,
                   (SELECT count(*) FROM tasker.named_step_edges e
                      JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
                     WHERE e.to_named_step_id = s.named_step_id
                       AND p.name <> ALL (bypass_steps)) AS parents
              FROM tasker.named_steps s
             WHERE s.named_task_id = template_id
        ), created AS (
            INSERT INTO tasker.workflow_steps
                   (task_id, named_step_id, name, current_state, handler, queue, priority,
                    retryable, max_attempts, skippable, pending_parents, transitions,
                    completed_at, children_released)
            SELECT t.task_id, s.named_step_id, s.name,
                   CASE WHEN s.bypassed THEN 'resolved_manually' ELSE 'pending' END,
                   s.handler, s.queue, priority, s.retryable, s.max_attempts, s.skippable, s.parents,
                   CASE WHEN s.bypassed THEN 1 ELSE 0 END,
                   CASE WHEN s.bypassed THEN now() END,
                   s.bypassed
              FROM unnest(inserted_ids) AS t(task_id)
             CROSS JOIN template_steps s
             ORDER BY t.task_id, s.position
            RETURNING task_id, named_step_id, workflow_step_id, current_state
        ), bypassed AS (
            INSERT INTO tasker.workflow_step_transitions
                   (task_id, workflow_step_id, from_state, to_state, sort_key, metadata)
            SELECT c.task_id, c.workflow_step_id, 'pending', 'resolved_manually', 1,
                   '{"bypassed": true}'::jsonb
              FROM created c WHERE c.current_state = 'resolved_manually'
             ORDER BY c.task_id, c.workflow_step_id
        )
        INSERT INTO tasker.workflow_step_edges (task_id, from_step_id, to_step_id)
        SELECT f.task_id, f.workflow_step_id, c.workflow_step_id
          FROM tasker.named_step_edges e
          JOIN created f ON f.named_step_id = e.from_named_step_id
          JOIN created c ON c.named_step_id = e.to_named_step_id AND c.task_id = f.task_id
         WHERE e.named_task_id = template_id;

        -- the template's steps each task starts with, and the ready ones
        -- among them (pending with no parent left to wait for)
        SELECT count(*) FILTER (WHERE s.name <> ALL (bypass_steps)),
               array_agg(DISTINCT s.queue) FILTER (WHERE s.handler IS NULL AND r.ready),
               coalesce(bool_or(s.handler IS NOT NULL AND r.ready), false)
          INTO pending_count, ready_queues, ready_sql
          FROM tasker.named_steps s
         CROSS JOIN LATERAL (
               SELECT s.name <> ALL (bypass_steps) AND NOT EXISTS (
                      SELECT 1 FROM tasker.named_step_edges e
                        JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
                       WHERE e.to_named_step_id = s.named_step_id AND p.name <> ALL (bypass_steps))
                      AS ready) r
         WHERE s.named_task_id = template_id;
        -- no steps, or every one bypassed: every task complete at once
        IF pending_count = 0 THEN
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
COMMENT ON FUNCTION tasker.create_tasks(text, text, jsonb[], text, integer, text[], text, text, text, text[], text[]) IS
    'Creates a task per context (of a template, newest version by default) in one call, each as create_task would; returns their ids in order, the existing one for a duplicate identity.';

CREATE FUNCTION tasker.step_transitions(task_id bigint)
    RETURNS TABLE (workflow_step_id bigint, step_name text, sort_key integer, from_state text,
                   to_state text, metadata jsonb, created_at timestamptz)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tasker._authorize_task(step_transitions.task_id, 'task_id');
    SELECT tr.workflow_step_id, s.name, tr.sort_key, tr.from_state, tr.to_state, tr.metadata, tr.created_at
      FROM tasker.workflow_step_transitions tr
      JOIN tasker.workflow_steps s
        ON s.task_id = tr.task_id AND s.workflow_step_id = tr.workflow_step_id
     WHERE tr.task_id = step_transitions.task_id
     ORDER BY tr.workflow_step_transition_id
$$;
COMMENT ON FUNCTION tasker.step_transitions(bigint) IS
    'The step state changes of a task, in the order they happened.';

CREATE FUNCTION tasker.task_history(task_id bigint)
    RETURNS TABLE (sort_key integer, from_state text, to_state text, metadata jsonb, created_at timestamptz)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tasker._authorize_task(task_history.task_id, 'task_id');
    SELECT sort_key, from_state, to_state, metadata, created_at
      FROM tasker.task_transitions tr
     WHERE tr.task_id = task_history.task_id
     ORDER BY sort_key
$$;
COMMENT ON FUNCTION tasker.task_history(bigint) IS 'The state changes of a task, in order.';

CREATE FUNCTION tasker.task_steps(task_id bigint)
    RETURNS TABLE (workflow_step_id bigint, name text, current_state text, attempts integer,
                   max_attempts integer, pending_parents integer, next_attempt_at timestamptz,
                   results jsonb, error jsonb)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tasker._authorize_task(task_steps.task_id, 'task_id');
    SELECT workflow_step_id, name, current_state, attempts, max_attempts, pending_parents,
           next_attempt_at, results, error
      FROM tasker.workflow_steps s
     WHERE s.task_id = task_steps.task_id
     ORDER BY workflow_step_id
$$;
COMMENT ON FUNCTION tasker.task_steps(bigint) IS 'The steps of a task and where each stands.';
