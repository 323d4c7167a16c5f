-- tasker install script, assembled by the Makefile from src/sql/*.sql.
\echo Use "CREATE EXTENSION tasker" to load this file. \quit

--------------------------------------------------------------------------
-- 00_schema.sql: the registry (templates) and the runtime tables.
--------------------------------------------------------------------------

-- Registry ---------------------------------------------------------------

CREATE TABLE tasker.namespaces (
    namespace_id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 128),
    description     text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker.namespaces IS 'Namespaces group task templates (and, by default, their queues).';

CREATE TABLE tasker.dependent_systems (
    dependent_system_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 128),
    description     text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker.dependent_systems IS 'External systems a step talks to (for reporting).';

CREATE TABLE tasker.named_tasks (
    named_task_id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace_id    integer NOT NULL REFERENCES tasker.namespaces,
    name            text NOT NULL CHECK (name <> '' AND length(name) <= 128),
    version         text NOT NULL,
    version_order   integer[] NOT NULL,       -- major, minor, patch: for "newest"
    description     text,
    identity_strategy text NOT NULL DEFAULT 'always_unique'
                    CHECK (identity_strategy IN ('always_unique', 'strict', 'caller_provided')),
    context_schema  jsonb,
    default_dependent_system_id integer REFERENCES tasker.dependent_systems,
    template        jsonb NOT NULL,           -- the registered body, normalized
    owner_role      regrole NOT NULL,         -- SQL handlers run as this role
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace_id, name, version)
);
COMMENT ON TABLE tasker.named_tasks IS 'Task templates: one row per namespace, name and semver version.';

CREATE TABLE tasker.named_steps (
    named_step_id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    named_task_id   integer NOT NULL REFERENCES tasker.named_tasks ON DELETE CASCADE,
    name            text NOT NULL CHECK (name <> '' AND length(name) <= 128),
    position        integer NOT NULL,         -- topological order within the template
    description     text,
    dependent_system_id integer REFERENCES tasker.dependent_systems,
    handler         regprocedure,             -- NULL: an external step, claimed from queue
    queue           text NOT NULL CHECK (queue <> ''),
    retryable       boolean NOT NULL DEFAULT true,
    max_attempts    integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    timeout         interval CHECK (timeout > interval '0'),
    skippable       boolean NOT NULL DEFAULT false,
    UNIQUE (named_task_id, name),
    UNIQUE (named_task_id, position)
);
COMMENT ON TABLE tasker.named_steps IS 'The steps of a task template.';

CREATE TABLE tasker.named_step_edges (
    named_task_id   integer NOT NULL REFERENCES tasker.named_tasks ON DELETE CASCADE,
    from_named_step_id integer NOT NULL REFERENCES tasker.named_steps ON DELETE CASCADE,
    to_named_step_id integer NOT NULL REFERENCES tasker.named_steps ON DELETE CASCADE,
    PRIMARY KEY (named_task_id, from_named_step_id, to_named_step_id),
    CHECK (from_named_step_id <> to_named_step_id)
);
CREATE INDEX ON tasker.named_step_edges (to_named_step_id);
COMMENT ON TABLE tasker.named_step_edges IS 'The DAG of a task template: parent (from) to child (to).';

-- Runtime ----------------------------------------------------------------
-- Every runtime table is keyed by task_id first: all rows of a task live
-- together (and task_id is the distribution column on a Citus cluster).

CREATE TABLE tasker.tasks (
    task_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    named_task_id   integer NOT NULL REFERENCES tasker.named_tasks,
    current_state   text NOT NULL DEFAULT 'pending'
                    CHECK (current_state IN ('pending', 'in_progress', 'complete', 'error',
                                             'cancelled', 'resolved_manually')),
    context         jsonb NOT NULL DEFAULT '{}',
    initiator       text,
    source_system   text,
    reason          text,
    tags            text[] NOT NULL DEFAULT '{}',
    bypass_steps    text[] NOT NULL DEFAULT '{}',
    priority        integer NOT NULL DEFAULT 0,
    identity_hash   text,                     -- strict / caller_provided identity
    transitions     integer NOT NULL DEFAULT 0,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE UNIQUE INDEX tasks_identity_idx ON tasker.tasks (named_task_id, identity_hash)
    WHERE identity_hash IS NOT NULL;
CREATE INDEX tasks_unfinished_idx ON tasker.tasks (current_state)
    WHERE current_state IN ('pending', 'in_progress', 'error');
CREATE INDEX tasks_named_task_idx ON tasker.tasks (named_task_id, created_at);
COMMENT ON TABLE tasker.tasks IS 'A task is one run of a template with a JSON context.';

CREATE TABLE tasker.workflow_steps (
    task_id         bigint NOT NULL REFERENCES tasker.tasks ON DELETE CASCADE,
    workflow_step_id bigint GENERATED ALWAYS AS IDENTITY,
    named_step_id   integer NOT NULL REFERENCES tasker.named_steps,
    name            text NOT NULL,
    current_state   text NOT NULL DEFAULT 'pending'
                    CHECK (current_state IN ('pending', 'in_progress', 'waiting_for_retry',
                                             'complete', 'error', 'cancelled',
                                             'resolved_manually')),
    handler         regprocedure,             -- copied from the template: NULL = external
    queue           text NOT NULL,
    priority        integer NOT NULL DEFAULT 0,  -- the task's, for claim order
    retryable       boolean NOT NULL DEFAULT true,
    max_attempts    integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    skippable       boolean NOT NULL DEFAULT false,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- parents not yet complete / resolved_manually (or skipped): the hot path's
    -- readiness test, kept up to date as parents finish
    pending_parents integer NOT NULL DEFAULT 0 CHECK (pending_parents >= 0),
    children_released boolean NOT NULL DEFAULT false,  -- counted done for its children
    inputs          jsonb,
    results         jsonb,
    error           jsonb,
    backoff_request_seconds integer CHECK (backoff_request_seconds >= 0),
    next_attempt_at timestamptz,
    last_attempted_at timestamptz,
    last_failure_at timestamptz,
    lease_expires_at timestamptz,
    claimed_by      text,
    transitions     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (task_id, workflow_step_id),
    UNIQUE (task_id, name)
);
CREATE INDEX workflow_steps_id_idx ON tasker.workflow_steps (workflow_step_id);
-- The claim paths: only steps that are ready or backing off are in these.
CREATE INDEX workflow_steps_ready_external_idx
    ON tasker.workflow_steps (queue, priority DESC, task_id, workflow_step_id)
    WHERE handler IS NULL AND pending_parents = 0
      AND current_state IN ('pending', 'waiting_for_retry');
CREATE INDEX workflow_steps_ready_sql_idx
    ON tasker.workflow_steps (priority DESC, task_id, workflow_step_id)
    WHERE handler IS NOT NULL AND pending_parents = 0
      AND current_state IN ('pending', 'waiting_for_retry');
CREATE INDEX workflow_steps_leased_idx ON tasker.workflow_steps (lease_expires_at)
    WHERE current_state = 'in_progress';
COMMENT ON TABLE tasker.workflow_steps IS 'The steps of a task, with their current state.';

CREATE TABLE tasker.workflow_step_edges (
    task_id         bigint NOT NULL,
    from_step_id    bigint NOT NULL,
    to_step_id      bigint NOT NULL,
    name            text NOT NULL DEFAULT 'provides',
    PRIMARY KEY (task_id, from_step_id, to_step_id),
    -- both ends in the same task: an edge can never cross tasks
    FOREIGN KEY (task_id, from_step_id) REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    FOREIGN KEY (task_id, to_step_id) REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    CHECK (from_step_id <> to_step_id)
);
CREATE INDEX workflow_step_edges_to_idx ON tasker.workflow_step_edges (task_id, to_step_id);
COMMENT ON TABLE tasker.workflow_step_edges IS 'The DAG of a task: parent (from) to child (to).';

CREATE TABLE tasker.task_transitions (
    task_id         bigint NOT NULL REFERENCES tasker.tasks ON DELETE CASCADE,
    task_transition_id bigint GENERATED ALWAYS AS IDENTITY,
    from_state      text,
    to_state        text NOT NULL,
    sort_key        integer NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, task_transition_id),
    UNIQUE (task_id, sort_key)
);
CREATE INDEX task_transitions_created_idx ON tasker.task_transitions (created_at);
COMMENT ON TABLE tasker.task_transitions IS 'Append-only audit trail of task state changes.';

CREATE TABLE tasker.workflow_step_transitions (
    task_id         bigint NOT NULL,
    workflow_step_transition_id bigint GENERATED ALWAYS AS IDENTITY,
    workflow_step_id bigint NOT NULL,
    from_state      text,
    to_state        text NOT NULL,
    sort_key        integer NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, workflow_step_transition_id),
    UNIQUE (task_id, workflow_step_id, sort_key),
    FOREIGN KEY (task_id, workflow_step_id) REFERENCES tasker.workflow_steps ON DELETE CASCADE
);
CREATE INDEX workflow_step_transitions_created_idx
    ON tasker.workflow_step_transitions (created_at);
COMMENT ON TABLE tasker.workflow_step_transitions IS 'Append-only audit trail of step state changes.';

CREATE TABLE tasker.task_annotations (
    task_id         bigint NOT NULL REFERENCES tasker.tasks ON DELETE CASCADE,
    task_annotation_id bigint GENERATED ALWAYS AS IDENTITY,
    annotation_type text NOT NULL CHECK (annotation_type <> ''),
    annotation      jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, task_annotation_id)
);
COMMENT ON TABLE tasker.task_annotations IS 'Free-form notes attached to a task (by operators or handlers).';

-- The state machines are enforced in C on every change of current_state.
CREATE FUNCTION tasker._check_transition() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_check_transition_trigger';

CREATE TRIGGER tasks_check_transition
    BEFORE UPDATE OF current_state ON tasker.tasks
    FOR EACH ROW WHEN (OLD.current_state IS DISTINCT FROM NEW.current_state)
    EXECUTE FUNCTION tasker._check_transition('task');
CREATE TRIGGER workflow_steps_check_transition
    BEFORE UPDATE OF current_state ON tasker.workflow_steps
    FOR EACH ROW WHEN (OLD.current_state IS DISTINCT FROM NEW.current_state)
    EXECUTE FUNCTION tasker._check_transition('step');

-- pg_dump keeps the workflows (the extension's own objects are recreated).
SELECT pg_catalog.pg_extension_config_dump('tasker.namespaces', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.namespaces_namespace_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.dependent_systems', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.dependent_systems_dependent_system_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.named_tasks', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.named_tasks_named_task_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.named_steps', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.named_steps_named_step_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.named_step_edges', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.tasks', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.tasks_task_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.workflow_steps', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.workflow_steps_workflow_step_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.workflow_step_edges', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.task_transitions', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.task_transitions_task_transition_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.workflow_step_transitions', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.workflow_step_transitions_workflow_step_transition_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.task_annotations', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.task_annotations_task_annotation_id_seq', '');
--------------------------------------------------------------------------
-- 10_internal.sql: C entry points and internal helpers of the API.
--------------------------------------------------------------------------

CREATE FUNCTION tasker.transition_allowed(machine text, from_state text, to_state text)
    RETURNS boolean LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'tasker_transition_allowed';
COMMENT ON FUNCTION tasker.transition_allowed(text, text, text) IS
    'Whether the task or step state machine allows the move from_state -> to_state.';

CREATE FUNCTION tasker.state_machine(OUT machine text, OUT from_state text, OUT to_state text)
    RETURNS SETOF record LANGUAGE c STRICT IMMUTABLE
    AS 'MODULE_PATHNAME', 'tasker_state_machine';
COMMENT ON FUNCTION tasker.state_machine() IS
    'Every legal move of the task and step state machines (the table the C trigger checks).';

CREATE FUNCTION tasker.backoff_seconds(attempts integer, requested_seconds double precision DEFAULT NULL)
    RETURNS double precision LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'tasker_backoff_seconds';
COMMENT ON FUNCTION tasker.backoff_seconds(integer, double precision) IS
    'Retry delay after the given number of attempts: the request if any, else min(base * multiplier ^ attempts, max_backoff) with jitter (tasker.backoff_* GUCs).';

CREATE FUNCTION tasker._wake_dispatcher() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_wake_dispatcher';

-- _topological_order returns the 1-based indexes of n nodes in dependency
-- order, or raises 42P17 naming the steps on a cycle.
CREATE FUNCTION tasker._topological_order(names text[], edge_from integer[], edge_to integer[])
    RETURNS integer[] LANGUAGE c STRICT IMMUTABLE
    AS 'MODULE_PATHNAME', 'tasker_topological_order';

-- _publish_transition sends a lifecycle event on tasker_events (fired by
-- row triggers whose WHEN clause checks tasker.publish_events).
CREATE FUNCTION tasker._publish_transition() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    machine text := TG_ARGV[0];
    event_name text;
BEGIN
    IF machine = 'task' THEN
        event_name := CASE NEW.to_state
            WHEN 'in_progress' THEN 'task.start_requested'
            WHEN 'complete' THEN 'task.completed'
            WHEN 'error' THEN 'task.failed'
            WHEN 'cancelled' THEN 'task.cancelled'
            WHEN 'resolved_manually' THEN 'task.resolved_manually'
            WHEN 'pending' THEN 'task.retry_requested'
        END;
    ELSE
        event_name := CASE NEW.to_state
            WHEN 'in_progress' THEN 'step.execution_requested'
            WHEN 'complete' THEN 'step.completed'
            WHEN 'error' THEN 'step.failed'
            WHEN 'waiting_for_retry' THEN 'step.failed'
            WHEN 'cancelled' THEN 'step.cancelled'
            WHEN 'resolved_manually' THEN 'step.resolved_manually'
            WHEN 'pending' THEN 'step.retry_requested'
        END;
    END IF;
    PERFORM pg_notify('tasker_events', jsonb_build_object(
        'event', event_name,
        'task_id', NEW.task_id,
        -- (a task transition has no workflow_step_id field: read it from the
        -- row as JSON, which is NULL there, rather than as NEW's field)
        'step_id', to_jsonb(NEW) -> 'workflow_step_id',
        'from_state', NEW.from_state,
        'to_state', NEW.to_state,
        'at', NEW.created_at)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER task_transitions_publish
    AFTER INSERT ON tasker.task_transitions FOR EACH ROW
    WHEN (pg_catalog.current_setting('tasker.publish_events', true)::boolean)
    EXECUTE FUNCTION tasker._publish_transition('task');
CREATE TRIGGER workflow_step_transitions_publish
    AFTER INSERT ON tasker.workflow_step_transitions FOR EACH ROW
    WHEN (pg_catalog.current_setting('tasker.publish_events', true)::boolean)
    EXECUTE FUNCTION tasker._publish_transition('step');

-- _signal_ready tells whoever runs the given steps that they are ready:
-- LISTENers of tasker_ready_<queue> for external steps (pg_notify folds
-- identical notifications of one transaction into one), the dispatcher's
-- latch for SQL-handler steps.  Both fire only at commit.
CREATE FUNCTION tasker._signal_ready(queues text[], has_sql_steps boolean) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    q text;
BEGIN
    IF queues IS NOT NULL THEN
        FOREACH q IN ARRAY queues LOOP
            IF q IS NOT NULL THEN
                PERFORM pg_notify('tasker_ready_' || q, q);
            END IF;
        END LOOP;
    END IF;
    IF has_sql_steps THEN
        PERFORM tasker._wake_dispatcher();
    END IF;
END $$;

-- _move_task moves a task to to_state (compare-and-swap on from_state, the
-- row is locked by the UPDATE) and writes its transition row.  Returns
-- false when the task was not in from_state.
CREATE FUNCTION tasker._move_task(p_task_id bigint, p_from text, p_to text, p_metadata jsonb DEFAULT '{}')
    RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ordinal integer;
BEGIN
    UPDATE tasker.tasks
       SET current_state = p_to,
           transitions = transitions + 1,
           updated_at = now(),
           completed_at = CASE WHEN p_to IN ('complete', 'error', 'cancelled', 'resolved_manually')
                               THEN now() END
     WHERE task_id = p_task_id AND current_state = p_from
    RETURNING transitions INTO ordinal;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, sort_key, metadata)
    VALUES (p_task_id, p_from, p_to, ordinal, coalesce(p_metadata, '{}'));
    RETURN true;
END $$;

-- _release_children counts a finished parent as done for its children and
-- signals the ones that became ready; true when some child became ready
-- (the task then still has work, so it need not be finalized).  Internal
-- helpers on the hot path qualify every name and pin no search_path: a
-- SET clause costs a GUC save and restore per call.  Callers release a step's children
-- once: they set children_released in the same UPDATE that finishes the
-- step and call this only when it was false before (a skipped step that is
-- later retried or resolved does not release them twice).
CREATE FUNCTION tasker._release_children(p_task_id bigint, p_step_id bigint) RETURNS boolean
    LANGUAGE plpgsql AS $$
DECLARE
    ready_queues text[];
    ready_sql boolean;
BEGIN
    WITH released AS (
        UPDATE tasker.workflow_steps c
           SET pending_parents = c.pending_parents - 1, updated_at = now()
          FROM tasker.workflow_step_edges e
         WHERE e.task_id = p_task_id AND e.from_step_id = p_step_id
           AND c.task_id = p_task_id AND c.workflow_step_id = e.to_step_id
        RETURNING c.pending_parents, c.current_state, c.handler, c.queue
    )
    SELECT array_agg(DISTINCT queue) FILTER (WHERE handler IS NULL),
           coalesce(bool_or(handler IS NOT NULL), false)
      INTO ready_queues, ready_sql
      FROM released
     WHERE pending_parents = 0 AND current_state = 'pending';
    IF ready_queues IS NULL AND NOT ready_sql THEN
        RETURN false;
    END IF;
    PERFORM tasker._signal_ready(ready_queues, ready_sql);
    RETURN true;
END $$;

-- _finalize_task is _finalize_tasks for one task.
CREATE FUNCTION tasker._finalize_task(p_task_id bigint) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker._finalize_tasks(ARRAY[p_task_id]);
END $$;

-- _finalize_tasks recomputes tasks' states from their steps under the
-- tasks' row locks (taken after the step locks, like every writer, in
-- ascending id), so the last of several concurrent completions always sees
-- the others: all done -> complete; a permanent failure and nothing left
-- that can run -> error; a failed task that has runnable steps again
-- (retry, resolve) -> pending.  The locks come first, in a statement of
-- their own, so that the second statement's snapshot, taken after any wait
-- for them, sees every completion committed by the sessions that held
-- them.  A generic plan: with an array argument the planner judged every
-- custom plan cheaper and planned both statements again on every call
-- (0.35 ms, a third of a batch-1 complete_step).
CREATE FUNCTION tasker._finalize_tasks(p_task_ids bigint[]) RETURNS void
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
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

-- _check_count and _check_size raise 54000 when an amount, or a value's
-- size, exceeds the limit set by the named setting (src/limits.c).
CREATE FUNCTION tasker._check_count(setting text, amount bigint, what text) RETURNS void
    LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'tasker_check_count';
CREATE FUNCTION tasker._check_size(setting text, value jsonb, what text) RETURNS void
    LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'tasker_check_size';

-- _require raises 22004 when a required argument is NULL.
CREATE FUNCTION tasker._require(value anyelement, argument text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION 'argument "%" must not be null', argument
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
END $$;
--------------------------------------------------------------------------
-- 15_authorization.sql: who may do what, on which namespaces and queues.
--
-- The API functions run as the extension's owner (SECURITY DEFINER with a
-- pinned search_path, 85_security.sql); EXECUTE on them is granted by the
-- grant helpers only, and each one that acts on a namespace, a queue, a
-- task or a step authorizes tasker._caller() — the role that called, not
-- current_user — against tasker.grants.  doc/security.md has the patterns.
--
-- The checks below are on the hot path (claim, complete, fail): like the
-- other internal helpers they pin no search_path (their callers do) and a
-- superuser passes after two C calls.
--------------------------------------------------------------------------

CREATE TABLE tasker.grants (
    role            regrole NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('admin', 'submitter', 'worker')),
    scope           text NOT NULL,            -- namespace (submitter), queue (worker), '*': all; '' for admin
    granted_by      regrole NOT NULL,
    granted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, scope, role),
    CHECK ((kind = 'admin') = (scope = ''))
);
COMMENT ON TABLE tasker.grants IS
    'Who may use tasker on what: administrators, submitters of a namespace, workers of a queue (kept by tasker.grant_* and tasker.revoke_*; a member of a granted role has its grants).';
SELECT pg_catalog.pg_extension_config_dump('tasker.grants', '');

-- A SQL handler runs only with the owner its function had at registration
-- (security.c checks it before each run).
ALTER TABLE tasker.named_steps ADD COLUMN handler_owner regrole;
COMMENT ON COLUMN tasker.named_steps.handler_owner IS
    'Owner of the handler function when the template was registered; a run fails if it changed.';

CREATE FUNCTION tasker._record_handler_owner() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.handler_owner := (SELECT p.proowner FROM pg_proc p WHERE p.oid = NEW.handler);
    RETURN NEW;
END $$;
CREATE TRIGGER named_steps_handler_owner
    BEFORE INSERT ON tasker.named_steps
    FOR EACH ROW WHEN (NEW.handler IS NOT NULL AND NEW.handler_owner IS NULL)
    EXECUTE FUNCTION tasker._record_handler_owner();

CREATE FUNCTION tasker._caller() RETURNS regrole
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'tasker_caller';
COMMENT ON FUNCTION tasker._caller() IS
    'The role calling the API: the role after SET ROLE, ignoring security-definer frames; in an executor, the role the SQL handler runs as.';

CREATE FUNCTION tasker._role_is_superuser(role oid) RETURNS boolean
    LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'tasker_role_is_superuser';

-- _is_admin: a superuser, or a role with the privileges of an admin grantee.
CREATE FUNCTION tasker._is_admin(caller regrole) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT tasker._role_is_superuser(caller)
        OR EXISTS (SELECT FROM tasker.grants g
                    WHERE g.kind = 'admin' AND pg_catalog.pg_has_role(caller, g.role, 'USAGE'))
$$;

-- _authorize raises 42501 unless the caller may act as p_kind on p_scope
-- (a namespace for a submitter, a queue for a worker; administrators may
-- do everything).  A NULL scope is the caller's mistake: 22004 naming the
-- argument, as the function itself would raise for an administrator.
CREATE FUNCTION tasker._authorize(p_kind text, p_scope text, p_argument text) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    caller regrole := tasker._caller();
BEGIN
    IF tasker._role_is_superuser(caller) THEN
        RETURN;
    END IF;
    IF p_scope IS NULL THEN
        RAISE EXCEPTION 'argument "%" must not be null', p_argument
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM FROM tasker.grants g
     WHERE (g.kind = 'admin' OR (g.kind = p_kind AND g.scope IN (p_scope, '*')))
       AND pg_catalog.pg_has_role(caller, g.role, 'USAGE')
     LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    IF p_kind = 'admin' THEN
        RAISE EXCEPTION 'permission denied: role % is not a tasker administrator', caller
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An administrator can run tasker.grant_admin(role).';
    END IF;
    RAISE EXCEPTION 'permission denied for % "%"',
        CASE p_kind WHEN 'submitter' THEN 'namespace' ELSE 'queue' END, p_scope
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('Role %s holds no %s grant on it.', caller, p_kind),
              HINT = format('An administrator can run tasker.grant_%s(role, %s).', p_kind,
                            CASE p_kind WHEN 'submitter' THEN 'namespace' ELSE 'queue' END);
END $$;
COMMENT ON FUNCTION tasker._authorize(text, text, text) IS
    'Raises 42501 unless tasker._caller() is an administrator or holds a p_kind grant on p_scope (or on ''*'').';

-- _authorize_task: the caller submits to the task's namespace.  A task
-- that does not exist is 42704, as for an administrator.
CREATE FUNCTION tasker._authorize_task(p_task_id bigint, p_argument text) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    ns text;
BEGIN
    IF tasker._role_is_superuser(tasker._caller()) THEN
        RETURN;
    END IF;
    IF p_task_id IS NULL THEN
        RAISE EXCEPTION 'argument "%" must not be null', p_argument
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT n.name INTO ns
      FROM tasker.tasks t
      JOIN tasker.named_tasks nt ON nt.named_task_id = t.named_task_id
      JOIN tasker.namespaces n ON n.namespace_id = nt.namespace_id
     WHERE t.task_id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', p_task_id USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM tasker._authorize('submitter', ns, p_argument);
END $$;

-- _authorize_tasks: _authorize_task for each of several tasks (those that
-- do not exist are left to the caller's own check).
CREATE FUNCTION tasker._authorize_tasks(p_task_ids bigint[]) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    ns text;
BEGIN
    IF tasker._role_is_superuser(tasker._caller()) THEN
        RETURN;
    END IF;
    FOR ns IN SELECT DISTINCT n.name
                FROM tasker.tasks t
                JOIN tasker.named_tasks nt ON nt.named_task_id = t.named_task_id
                JOIN tasker.namespaces n ON n.namespace_id = nt.namespace_id
               WHERE t.task_id = ANY (p_task_ids)
               ORDER BY n.name LOOP
        PERFORM tasker._authorize('submitter', ns, NULL);
    END LOOP;
END $$;

-- _authorize_steps: the caller works the queues of the given steps, which
-- must be external (a SQL-handler step is reported by tasker's executors;
-- only an administrator may report on one).  Steps that do not exist are
-- left to the caller's own check (42704).
CREATE FUNCTION tasker._authorize_steps(p_step_ids bigint[]) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    caller regrole := tasker._caller();
    s record;
BEGIN
    IF tasker._role_is_superuser(caller) THEN
        RETURN;
    END IF;
    FOR s IN SELECT ws.queue, bool_or(ws.handler IS NOT NULL) AS in_database,
                    min(ws.workflow_step_id) FILTER (WHERE ws.handler IS NOT NULL) AS sql_step
               FROM tasker.workflow_steps ws
              WHERE ws.workflow_step_id = ANY (p_step_ids)
              GROUP BY ws.queue ORDER BY ws.queue LOOP
        IF s.in_database AND NOT tasker._is_admin(caller) THEN
            RAISE EXCEPTION 'permission denied for step %', s.sql_step
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'It runs a SQL handler: tasker''s executors report on it.';
        END IF;
        PERFORM tasker._authorize('worker', s.queue, 'queue');
    END LOOP;
END $$;

-- _authorize_step: _authorize_steps for one step (the hot path of
-- complete_step, fail_step and extend_lease).
CREATE FUNCTION tasker._authorize_step(p_step_id bigint) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    caller regrole := tasker._caller();
    q text;
    in_database boolean;
BEGIN
    IF tasker._role_is_superuser(caller) THEN
        RETURN;
    END IF;
    SELECT ws.queue, ws.handler IS NOT NULL INTO q, in_database
      FROM tasker.workflow_steps ws WHERE ws.workflow_step_id = p_step_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF in_database AND NOT tasker._is_admin(caller) THEN
        RAISE EXCEPTION 'permission denied for step %', p_step_id
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'It runs a SQL handler: tasker''s executors report on it.';
    END IF;
    PERFORM tasker._authorize('worker', q, 'queue');
END $$;
--------------------------------------------------------------------------
-- 20_templates.sql: registering task templates, and the context schema.
--------------------------------------------------------------------------

-- _parse_semver returns {major, minor, patch} or raises 22P02.
CREATE FUNCTION tasker._parse_semver(version text) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parts text[];
BEGIN
    parts := regexp_match(version, '^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$');
    IF parts IS NULL THEN
        RAISE EXCEPTION 'invalid version "%"', version
            USING ERRCODE = 'invalid_text_representation',
                  DETAIL = 'A version is MAJOR.MINOR.PATCH with non-negative integers, such as "1.0.0".';
    END IF;
    RETURN ARRAY[parts[1]::integer, parts[2]::integer, parts[3]::integer];
END $$;

-- _json_field reads one optional field of a JSON object and checks its type.
CREATE FUNCTION tasker._json_field(obj jsonb, field text, expected text, what text)
    RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    value jsonb := obj -> field;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> expected THEN
        RAISE EXCEPTION '% field "%" must be a JSON %, not %', what, field, expected, jsonb_typeof(value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;

-- _check_keys refuses unknown fields, so that a typo such as "depend_on"
-- is an error rather than a silently missing dependency.
CREATE FUNCTION tasker._check_keys(obj jsonb, allowed text[], what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown text;
BEGIN
    SELECT k INTO unknown FROM jsonb_object_keys(obj) AS k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown % field "%"', what, unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Known fields: %s.', array_to_string(allowed, ', '));
    END IF;
END $$;

-- _check_name validates a namespace, template, step or queue name.
CREATE FUNCTION tasker._check_name(name text, what text, max_length integer DEFAULT 128) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]*$' OR length(name) > max_length THEN
        RAISE EXCEPTION 'invalid % name "%"', what, coalesce(name, 'null')
            USING ERRCODE = 'invalid_name',
                  DETAIL = format('A %s name is 1 to %s letters, digits, "_", ".", ":" or "-", starting with a letter, digit or "_".', what, max_length);
    END IF;
    RETURN name;
END $$;

-- _check_context_schema validates the supported JSON-schema subset:
-- type, required, properties, enum, items, additionalProperties (a boolean)
-- and the annotations description, title and $schema; other keywords are refused.
CREATE FUNCTION tasker._check_context_schema(s jsonb, path text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t jsonb;
    prop record;
BEGIN
    IF jsonb_typeof(s) <> 'object' THEN
        RAISE EXCEPTION 'context_schema at "%" must be a JSON object', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tasker._check_keys(s, ARRAY['type', 'required', 'properties', 'enum', 'items',
                                        'description', 'title', '$schema', 'additionalProperties'],
                               'context_schema');
    t := s -> 'type';
    IF t IS NOT NULL THEN
        IF jsonb_typeof(t) = 'string' THEN
            t := jsonb_build_array(t);
        END IF;
        IF jsonb_typeof(t) <> 'array' OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(t) e
                WHERE e NOT IN ('"string"', '"number"', '"integer"', '"boolean"',
                                '"object"', '"array"', '"null"')) THEN
            RAISE EXCEPTION 'context_schema at "%" has an unsupported type %', path, s -> 'type'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Types are string, number, integer, boolean, object, array and null.';
        END IF;
    END IF;
    IF s ? 'required' AND (jsonb_typeof(s -> 'required') <> 'array' OR EXISTS (
           SELECT 1 FROM jsonb_array_elements(s -> 'required') e WHERE jsonb_typeof(e) <> 'string')) THEN
        RAISE EXCEPTION 'context_schema at "%": "required" must be an array of strings', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s ? 'enum' AND jsonb_typeof(s -> 'enum') <> 'array' THEN
        RAISE EXCEPTION 'context_schema at "%": "enum" must be an array', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s ? 'additionalProperties' AND jsonb_typeof(s -> 'additionalProperties') <> 'boolean' THEN
        RAISE EXCEPTION 'context_schema at "%": "additionalProperties" must be true or false', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s ? 'properties' THEN
        IF jsonb_typeof(s -> 'properties') <> 'object' THEN
            RAISE EXCEPTION 'context_schema at "%": "properties" must be an object', path
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR prop IN SELECT key, value FROM jsonb_each(s -> 'properties') LOOP
            PERFORM tasker._check_context_schema(prop.value, path || '.' || prop.key);
        END LOOP;
    END IF;
    IF s ? 'items' THEN
        PERFORM tasker._check_context_schema(s -> 'items', path || '[]');
    END IF;
END $$;

-- context_violation returns the first way value breaks the schema (naming
-- the field by its path), or NULL when it conforms.
CREATE FUNCTION tasker.context_violation(schema jsonb, value jsonb, path text DEFAULT '$')
    RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    types jsonb;
    actual text := jsonb_typeof(value);
    field text;
    prop record;
    element record;
    problem text;
BEGIN
    IF schema IS NULL THEN
        RETURN NULL;
    END IF;
    types := schema -> 'type';
    IF jsonb_typeof(types) = 'string' THEN
        types := jsonb_build_array(types);
    END IF;
    IF types IS NOT NULL AND NOT (
           types ? actual
        OR (actual = 'number' AND types ? 'integer' AND value::text ~ '^-?[0-9]+$')) THEN
        RETURN format('field "%s" must be of type %s, not %s', path,
                      (SELECT string_agg(t, ' or ') FROM jsonb_array_elements_text(types) t), actual);
    END IF;
    -- (equality, not @>: containment would let [1] match an enum member [1, 2])
    IF schema ? 'enum' AND NOT EXISTS (
           SELECT 1 FROM jsonb_array_elements(schema -> 'enum') AS m(member)
            WHERE m.member = context_violation.value) THEN
        RETURN format('field "%s" must be one of %s', path, schema -> 'enum');
    END IF;
    IF actual = 'object' THEN
        FOR field IN SELECT jsonb_array_elements_text(coalesce(schema -> 'required', '[]')) LOOP
            IF NOT value ? field THEN
                RETURN format('required field "%s.%s" is missing', path, field);
            END IF;
        END LOOP;
        IF schema -> 'additionalProperties' = 'false' THEN
            SELECT k INTO field FROM jsonb_object_keys(value) k
             WHERE NOT coalesce(schema -> 'properties', '{}') ? k ORDER BY k LIMIT 1;
            IF field IS NOT NULL THEN
                RETURN format('field "%s.%s" is not allowed', path, field);
            END IF;
        END IF;
        FOR prop IN SELECT j.k AS key, j.v AS sub FROM jsonb_each(coalesce(schema -> 'properties', '{}')) AS j(k, v) LOOP
            IF value ? prop.key THEN
                problem := tasker.context_violation(prop.sub, value -> prop.key, path || '.' || prop.key);
                IF problem IS NOT NULL THEN
                    RETURN problem;
                END IF;
            END IF;
        END LOOP;
    ELSIF actual = 'array' AND schema ? 'items' THEN
        FOR element IN SELECT a.e, a.n - 1 AS i FROM jsonb_array_elements(value) WITH ORDINALITY AS a(e, n) LOOP
            problem := tasker.context_violation(schema -> 'items', element.e, path || '[' || element.i || ']');
            IF problem IS NOT NULL THEN
                RETURN problem;
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION tasker.context_violation(jsonb, jsonb, text) IS
    'The first way a JSON value breaks a context schema (type, required, properties, additionalProperties, enum, items), or NULL.';

-- _resolve_handler turns a handler name into a regprocedure after checking
-- that it is (jsonb) RETURNS jsonb and that the caller may execute it.
CREATE FUNCTION tasker._resolve_handler(handler text, step_name text) RETURNS regprocedure
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fn regprocedure;
    rettype oid;
    argtypes oidvector;
    kind "char";
    retset boolean;
BEGIN
    BEGIN
        fn := to_regprocedure(CASE WHEN handler ~ '\(' THEN handler ELSE handler || '(jsonb)' END);
    EXCEPTION WHEN OTHERS THEN
        fn := NULL;
    END;
    IF fn IS NULL THEN
        RAISE EXCEPTION 'handler function "%" of step "%" does not exist', handler, step_name
            USING ERRCODE = 'undefined_function',
                  HINT = 'Name a schema-qualified function (jsonb) RETURNS jsonb, e.g. "app.charge(jsonb)".';
    END IF;
    SELECT p.prorettype, p.proargtypes, p.prokind, p.proretset INTO rettype, argtypes, kind, retset
      FROM pg_proc p WHERE p.oid = fn;
    -- (oidvector is zero-based: compare its element, not an oid[] cast of it)
    IF kind <> 'f' OR retset OR rettype <> 'jsonb'::regtype
       OR cardinality(argtypes::oid[]) <> 1 OR argtypes[0] <> 'jsonb'::regtype THEN
        RAISE EXCEPTION 'handler function % of step "%" must take (jsonb) and return jsonb', fn, step_name
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    -- (the caller, not current_user: register_template runs as the
    -- extension's owner, and the handler will run as the caller)
    IF NOT has_function_privilege(tasker._caller(), fn, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for handler function % of step "%"', fn, step_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Role %s may not execute it, and handlers run as the role that registers the template.', tasker._caller());
    END IF;
    RETURN fn;
END $$;

-- _step_array reads depends_on (or the Rails engine's depends_on_step /
-- depends_on_steps) as an array of names.
CREATE FUNCTION tasker._step_dependencies(step jsonb, step_name text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deps text[] := '{}';
    field text;
    value jsonb;
BEGIN
    FOREACH field IN ARRAY ARRAY['depends_on', 'depends_on_step', 'depends_on_steps'] LOOP
        value := step -> field;
        CONTINUE WHEN value IS NULL OR jsonb_typeof(value) = 'null';
        IF jsonb_typeof(value) = 'string' THEN
            deps := deps || (value #>> '{}');
        ELSIF jsonb_typeof(value) = 'array' THEN
            IF EXISTS (SELECT 1 FROM jsonb_array_elements(value) e WHERE jsonb_typeof(e) <> 'string') THEN
                RAISE EXCEPTION 'field "%" of step "%" must list step names as strings', field, step_name
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            deps := deps || ARRAY(SELECT jsonb_array_elements_text(value));
        ELSE
            RAISE EXCEPTION 'field "%" of step "%" must be a step name or an array of them', field, step_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT d FROM unnest(deps) d ORDER BY d);
END $$;

-- _dependent_system_id finds or creates a dependent system by name.
CREATE FUNCTION tasker._dependent_system_id(system_name text) RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id integer;
BEGIN
    IF system_name IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM tasker._check_name(system_name, 'dependent system');
    INSERT INTO tasker.dependent_systems (name) VALUES (system_name)
        ON CONFLICT (name) DO NOTHING RETURNING dependent_system_id INTO id;
    IF id IS NULL THEN
        SELECT dependent_system_id INTO id FROM tasker.dependent_systems WHERE name = system_name;
    END IF;
    RETURN id;
END $$;

-- _normalize_template checks a template document and returns it with every
-- default filled in, steps in dependency order: the canonical body that is
-- stored and compared when the same version is registered again.
-- (IntervalStyle is pinned so that the stored timeout text, and so the
-- comparison of bodies, does not depend on the session's setting.)
CREATE FUNCTION tasker._normalize_template(template jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    SET IntervalStyle = postgres AS $$
DECLARE
    ns text;
    tname text;
    ver text;
    strategy text;
    steps jsonb;
    step jsonb;
    step_name text;
    names text[] := '{}';
    name_index jsonb;
    first_duplicate bigint;
    default_system jsonb;
    deps text[];
    dep text;
    edge_from integer[] := '{}';
    edge_to integer[] := '{}';
    normalized jsonb[] := '{}';
    ordered jsonb := '[]';
    order_idx integer[];
    idx integer;
    handler regprocedure;
    queue text;
    max_attempts jsonb;
    timeout_value jsonb;
    timeout interval;
    retryable jsonb;
    i integer;
BEGIN
    IF template IS NULL THEN
        RAISE EXCEPTION 'template must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(template) <> 'object' THEN
        RAISE EXCEPTION 'template must be a JSON object, not %', jsonb_typeof(template)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tasker._check_keys(template, ARRAY['namespace', 'name', 'version', 'description',
        'identity_strategy', 'context_schema', 'default_dependent_system', 'steps'], 'template');

    ns := coalesce(tasker._json_field(template, 'namespace', 'string', 'template') #>> '{}', 'default');
    PERFORM tasker._check_name(ns, 'namespace', 50);
    tname := tasker._json_field(template, 'name', 'string', 'template') #>> '{}';
    IF tname IS NULL THEN
        RAISE EXCEPTION 'template has no "name"' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tasker._check_name(tname, 'template');
    ver := coalesce(tasker._json_field(template, 'version', 'string', 'template') #>> '{}', '0.1.0');
    PERFORM tasker._parse_semver(ver);
    strategy := coalesce(tasker._json_field(template, 'identity_strategy', 'string', 'template') #>> '{}',
                         'always_unique');
    IF strategy NOT IN ('always_unique', 'strict', 'caller_provided') THEN
        RAISE EXCEPTION 'unknown identity_strategy "%"', strategy
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use always_unique, strict or caller_provided.';
    END IF;
    IF template ? 'context_schema' AND jsonb_typeof(template -> 'context_schema') <> 'null' THEN
        PERFORM tasker._check_context_schema(template -> 'context_schema', '$');
    END IF;
    PERFORM tasker._json_field(template, 'description', 'string', 'template');
    PERFORM tasker._json_field(template, 'default_dependent_system', 'string', 'template');

    steps := coalesce(tasker._json_field(template, 'steps', 'array', 'template'), '[]');
    PERFORM tasker._check_count('tasker.max_template_steps', jsonb_array_length(steps),
                                format('template "%s.%s"', ns, tname));
    -- read once: template may be a TOASTed value, detoasted by every read
    default_system := template -> 'default_dependent_system';

    -- first pass: names.  Every lookup below is by an index or a sort, never
    -- a search of the names seen so far: templates may have 10,000 steps.
    SELECT min(d.step_pos) INTO first_duplicate
      FROM (SELECT x.step_pos,
                   row_number() OVER (PARTITION BY x.e ->> 'name' ORDER BY x.step_pos) AS nth
              FROM jsonb_array_elements(steps) WITH ORDINALITY AS x(e, step_pos)
             WHERE jsonb_typeof(x.e -> 'name') = 'string') d
     WHERE d.nth > 1;
    FOR step IN SELECT value FROM jsonb_array_elements(steps) LOOP
        IF jsonb_typeof(step) <> 'object' THEN
            RAISE EXCEPTION 'every step must be a JSON object, not %', jsonb_typeof(step)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        step_name := tasker._json_field(step, 'name', 'string', 'step') #>> '{}';
        IF step_name IS NULL THEN
            RAISE EXCEPTION 'step % has no "name"', cardinality(names) + 1
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM tasker._check_name(step_name, 'step');
        IF cardinality(names) + 1 = first_duplicate THEN
            RAISE EXCEPTION 'duplicate step name "%"', step_name
                USING ERRCODE = 'duplicate_object';
        END IF;
        names := names || step_name;
    END LOOP;

    -- second pass: fields and edges
    SELECT jsonb_object_agg(u.step_name, u.step_pos) INTO name_index
      FROM unnest(names) WITH ORDINALITY AS u(step_name, step_pos);
    i := 0;
    FOR step IN SELECT value FROM jsonb_array_elements(steps) LOOP
        i := i + 1;
        step_name := names[i];
        PERFORM tasker._check_keys(step, ARRAY['name', 'description', 'depends_on', 'depends_on_step',
            'depends_on_steps', 'handler', 'queue', 'retryable', 'default_retryable', 'max_attempts',
            'default_retry_limit', 'timeout', 'skippable', 'dependent_system'], 'step');
        deps := tasker._step_dependencies(step, step_name);
        PERFORM tasker._check_count('tasker.max_step_dependencies', cardinality(deps),
                                    format('step "%s"', step_name));
        FOREACH dep IN ARRAY deps LOOP
            IF dep = step_name THEN
                RAISE EXCEPTION 'step "%" depends on itself', step_name
                    USING ERRCODE = 'invalid_object_definition';
            END IF;
            idx := (name_index ->> dep)::integer;
            IF idx IS NULL THEN
                RAISE EXCEPTION 'step "%" depends on unknown step "%"', step_name, dep
                    USING ERRCODE = 'undefined_object';
            END IF;
            edge_from := edge_from || idx;
            edge_to := edge_to || i;
        END LOOP;

        handler := NULL;
        IF tasker._json_field(step, 'handler', 'string', 'step') IS NOT NULL THEN
            handler := tasker._resolve_handler(step ->> 'handler', step_name);
        END IF;
        queue := coalesce(tasker._json_field(step, 'queue', 'string', 'step') #>> '{}', ns);
        PERFORM tasker._check_name(queue, 'queue', 50);

        retryable := coalesce(tasker._json_field(step, 'retryable', 'boolean', 'step'),
                              tasker._json_field(step, 'default_retryable', 'boolean', 'step'),
                              'true');
        max_attempts := coalesce(tasker._json_field(step, 'max_attempts', 'number', 'step'),
                                 tasker._json_field(step, 'default_retry_limit', 'number', 'step'),
                                 '3');
        IF max_attempts::text !~ '^[0-9]+$' OR max_attempts::numeric < 1 OR max_attempts::numeric > 1000000 THEN
            RAISE EXCEPTION 'max_attempts of step "%" must be a positive integer, not %', step_name, max_attempts
                USING ERRCODE = 'invalid_parameter_value';
        END IF;

        timeout := NULL;
        timeout_value := step -> 'timeout';
        IF timeout_value IS NOT NULL AND jsonb_typeof(timeout_value) <> 'null' THEN
            BEGIN
                timeout := CASE jsonb_typeof(timeout_value)
                    WHEN 'number' THEN make_interval(secs => timeout_value::text::double precision)
                    WHEN 'string' THEN (timeout_value #>> '{}')::interval
                END;
            EXCEPTION WHEN data_exception THEN
                timeout := NULL;
            END;
            IF timeout IS NULL OR timeout <= interval '0' THEN
                RAISE EXCEPTION 'timeout of step "%" must be a positive number of seconds or interval, not %',
                    step_name, timeout_value
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END IF;
        PERFORM tasker._json_field(step, 'skippable', 'boolean', 'step');
        PERFORM tasker._json_field(step, 'description', 'string', 'step');
        PERFORM tasker._json_field(step, 'dependent_system', 'string', 'step');

        normalized := normalized || jsonb_build_object(
            'name', step_name,
            'description', step -> 'description',
            'depends_on', to_jsonb(deps),
            'handler', handler::text,
            'queue', queue,
            'retryable', retryable,
            'max_attempts', max_attempts::text::integer,
            'timeout', timeout::text,
            'skippable', coalesce(tasker._json_field(step, 'skippable', 'boolean', 'step'), 'false'),
            'dependent_system', coalesce(step -> 'dependent_system', default_system));
    END LOOP;

    order_idx := tasker._topological_order(names, edge_from, edge_to);
    SELECT coalesce(jsonb_agg(n.body ORDER BY o.step_pos), '[]') INTO ordered
      FROM unnest(order_idx) WITH ORDINALITY AS o(step_idx, step_pos)
      JOIN unnest(normalized) WITH ORDINALITY AS n(body, step_idx) ON n.step_idx = o.step_idx;

    RETURN jsonb_build_object(
        'namespace', ns,
        'name', tname,
        'version', ver,
        'description', template -> 'description',
        'identity_strategy', strategy,
        'context_schema', template -> 'context_schema',
        'default_dependent_system', template -> 'default_dependent_system',
        'steps', ordered);
END $$;

CREATE FUNCTION tasker.register_template(template jsonb) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    body jsonb := tasker._normalize_template(template);
    ns_id integer;
    existing record;
    new_id integer;
    step jsonb;
    pos integer := 0;
BEGIN
    PERFORM tasker._authorize('submitter', body ->> 'namespace', 'namespace');
    -- one registration of a name at a time, so two sessions registering
    -- the same version cannot both insert
    PERFORM pg_advisory_xact_lock(hashtext('tasker.register_template'),
                                  hashtext(body ->> 'namespace' || '/' || (body ->> 'name')));

    INSERT INTO tasker.namespaces (name) VALUES (body ->> 'namespace')
        ON CONFLICT (name) DO NOTHING RETURNING namespace_id INTO ns_id;
    IF ns_id IS NULL THEN
        SELECT namespace_id INTO ns_id FROM tasker.namespaces WHERE name = body ->> 'namespace';
    END IF;

    SELECT named_task_id, t.template INTO existing
      FROM tasker.named_tasks t
     WHERE namespace_id = ns_id AND name = body ->> 'name' AND version = body ->> 'version';
    IF FOUND THEN
        IF existing.template = body THEN
            RETURN existing.named_task_id;
        END IF;
        RAISE EXCEPTION 'template %.% version % is already registered with a different body',
            body ->> 'namespace', body ->> 'name', body ->> 'version'
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Registered versions are immutable: register the change as a new version.';
    END IF;

    INSERT INTO tasker.named_tasks (namespace_id, name, version, version_order, description,
                                    identity_strategy, context_schema, default_dependent_system_id,
                                    template, owner_role)
    VALUES (ns_id, body ->> 'name', body ->> 'version', tasker._parse_semver(body ->> 'version'),
            body ->> 'description', body ->> 'identity_strategy',
            nullif(body -> 'context_schema', 'null'),
            tasker._dependent_system_id(body ->> 'default_dependent_system'), body,
            tasker._caller())
    RETURNING named_task_id INTO new_id;

    FOR step IN SELECT value FROM jsonb_array_elements(body -> 'steps') LOOP
        pos := pos + 1;
        INSERT INTO tasker.named_steps (named_task_id, name, position, description, dependent_system_id,
                                        handler, queue, retryable, max_attempts, timeout, skippable)
        VALUES (new_id, step ->> 'name', pos, step ->> 'description',
                tasker._dependent_system_id(step ->> 'dependent_system'),
                (step ->> 'handler')::regprocedure, step ->> 'queue', (step ->> 'retryable')::boolean,
                (step ->> 'max_attempts')::integer, (step ->> 'timeout')::interval,
                (step ->> 'skippable')::boolean);
    END LOOP;

    INSERT INTO tasker.named_step_edges (named_task_id, from_named_step_id, to_named_step_id)
    SELECT new_id, p.named_step_id, c.named_step_id
      FROM jsonb_array_elements(body -> 'steps') s
      CROSS JOIN LATERAL jsonb_array_elements_text(s -> 'depends_on') d
      JOIN tasker.named_steps c ON c.named_task_id = new_id AND c.name = s ->> 'name'
      JOIN tasker.named_steps p ON p.named_task_id = new_id AND p.name = d;

    RETURN new_id;
END $$;
COMMENT ON FUNCTION tasker.register_template(jsonb) IS
    'Validates and stores a task template version; registering the same body again returns its id.';

CREATE VIEW tasker.templates AS
SELECT t.named_task_id,
       n.name AS namespace,
       t.name,
       t.version,
       t.description,
       t.identity_strategy,
       (SELECT count(*) FROM tasker.named_steps s WHERE s.named_task_id = t.named_task_id) AS step_count,
       (SELECT array_agg(s.name ORDER BY s.position) FROM tasker.named_steps s
         WHERE s.named_task_id = t.named_task_id) AS steps,
       t.owner_role,
       t.created_at
  FROM tasker.named_tasks t
  JOIN tasker.namespaces n USING (namespace_id);
COMMENT ON VIEW tasker.templates IS 'Registered task templates, one row per version.';
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
COMMENT ON FUNCTION tasker.create_task(text, text, text, jsonb, text, text, text, text[], text[], integer, text) IS
    'Creates a task of a template (newest version by default) with its steps and edges; returns its id, or the existing one for a duplicate identity.';

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
--------------------------------------------------------------------------
-- 50_readiness.sql: the diagnostic side of readiness and the rest of the
-- Rails engine's SQL function family — step readiness, execution context,
-- dependency levels, health counts, analytics, slowest steps and tasks.
--
-- The hot path (tasker._claim) finds ready steps through pending_parents
-- and partial indexes; step_readiness_status recomputes readiness from the
-- task's edges and its parents' states, and the readiness_agreement test
-- checks on random DAGs that both name the same steps.  Every function reads
-- only the rows of the tasks it is asked about (all keyed by task_id first).
-- Parameter names follow the Rails engine (input_task_id, ...): a function
-- cannot take a parameter named like one of its result columns.  See
-- doc/readiness.md for the reference.
--------------------------------------------------------------------------

-- State counters ---------------------------------------------------------
-- Tasks and steps per state, kept by triggers (src/state_counts.c): each
-- backend adds its transaction's changes to its own row at commit, so the
-- counts never serialize claims and completions, and system_health_counts
-- reads a few dozen rows instead of a million.

CREATE TABLE tasker.state_counts (
    slot            bigint PRIMARY KEY,   -- backend id; 0 = recount_states(); < 0 = a prepared transaction
    tasks_pending   bigint NOT NULL DEFAULT 0,
    tasks_in_progress bigint NOT NULL DEFAULT 0,
    tasks_complete  bigint NOT NULL DEFAULT 0,
    tasks_error     bigint NOT NULL DEFAULT 0,
    tasks_cancelled bigint NOT NULL DEFAULT 0,
    tasks_resolved_manually bigint NOT NULL DEFAULT 0,
    steps_pending   bigint NOT NULL DEFAULT 0,
    steps_in_progress bigint NOT NULL DEFAULT 0,
    steps_waiting_for_retry bigint NOT NULL DEFAULT 0,
    steps_complete  bigint NOT NULL DEFAULT 0,
    steps_error     bigint NOT NULL DEFAULT 0,
    steps_exhausted bigint NOT NULL DEFAULT 0,   -- of those in error: attempts >= max_attempts
    steps_cancelled bigint NOT NULL DEFAULT 0,
    steps_resolved_manually bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE tasker.state_counts IS
    'Tasks and steps per state as deltas, one row per backend that changed a state; sum the rows (system_health_counts does). Kept by triggers; tasker.recount_states() rebuilds it.';

-- No SET clause: the trigger resolves no names (its commit-time flush uses
-- schema-qualified prepared statements), and a SET costs a GUC save and
-- restore on every row of the claim and complete paths.
CREATE FUNCTION tasker._count_states() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_count_states';
COMMENT ON FUNCTION tasker._count_states() IS
    'Row trigger (argument task or step): counts inserted, deleted and moved rows into this transaction''s state count deltas.';

-- _unflushed_state_counts: the deltas this transaction counted and has not
-- written yet (they are written just before it commits), in the column
-- order of state_counts.
CREATE FUNCTION tasker._unflushed_state_counts() RETURNS bigint[]
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'tasker_unflushed_state_counts';
COMMENT ON FUNCTION tasker._unflushed_state_counts() IS
    'The state count deltas this transaction has not written yet, in the column order of tasker.state_counts.';

CREATE FUNCTION tasker._forget_state_counts(machine text) RETURNS void
    LANGUAGE c STRICT VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'tasker_forget_state_counts';
COMMENT ON FUNCTION tasker._forget_state_counts(text) IS
    'Drops this transaction''s unwritten state count deltas of the task or step machine (after TRUNCATE or a recount).';

CREATE TRIGGER tasks_count_rows
    AFTER INSERT OR DELETE ON tasker.tasks
    FOR EACH ROW EXECUTE FUNCTION tasker._count_states('task');
-- Moves are counted by BEFORE triggers, cheaper on the hot path; their names
-- sort after the state machine's (*_check_transition), which fires first.
CREATE TRIGGER tasks_count_moves
    BEFORE UPDATE OF current_state ON tasker.tasks
    FOR EACH ROW WHEN (OLD.current_state IS DISTINCT FROM NEW.current_state)
    EXECUTE FUNCTION tasker._count_states('task');
CREATE TRIGGER workflow_steps_count_rows
    AFTER INSERT OR DELETE ON tasker.workflow_steps
    FOR EACH ROW EXECUTE FUNCTION tasker._count_states('step');
CREATE TRIGGER workflow_steps_count_moves
    BEFORE UPDATE OF current_state, attempts, max_attempts ON tasker.workflow_steps
    FOR EACH ROW WHEN (OLD.current_state IS DISTINCT FROM NEW.current_state
                       OR (NEW.current_state = 'error'
                           AND (OLD.attempts >= OLD.max_attempts) IS DISTINCT FROM
                               (NEW.attempts >= NEW.max_attempts)))
    EXECUTE FUNCTION tasker._count_states('step');

-- _count_truncate empties a machine's counters when its table is truncated.
CREATE FUNCTION tasker._count_truncate() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_ARGV[0] = 'task' THEN
        UPDATE tasker.state_counts
           SET tasks_pending = 0, tasks_in_progress = 0, tasks_complete = 0, tasks_error = 0,
               tasks_cancelled = 0, tasks_resolved_manually = 0;
    ELSE
        UPDATE tasker.state_counts
           SET steps_pending = 0, steps_in_progress = 0, steps_waiting_for_retry = 0,
               steps_complete = 0, steps_error = 0, steps_exhausted = 0, steps_cancelled = 0,
               steps_resolved_manually = 0;
    END IF;
    PERFORM tasker._forget_state_counts(TG_ARGV[0]);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION tasker._count_truncate() IS
    'Statement trigger: zeroes the state counters of a truncated table.';
CREATE TRIGGER tasks_count_truncate
    AFTER TRUNCATE ON tasker.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION tasker._count_truncate('task');
CREATE TRIGGER workflow_steps_count_truncate
    AFTER TRUNCATE ON tasker.workflow_steps
    FOR EACH STATEMENT EXECUTE FUNCTION tasker._count_truncate('step');

CREATE FUNCTION tasker.recount_states() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'recount_states() must run at isolation level read committed, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'It counts what is committed once it holds its locks.';
    END IF;
    -- Every writer adds its deltas to state_counts just before it commits,
    -- so this lock is enough for an exact count: a writer that committed
    -- before it was granted is counted below, any other waits at its
    -- flush and adds its deltas to the new count.  (A SHARE lock on tasks
    -- and workflow_steps deadlocked with every writer holding one of them
    -- and wanting the other, and let two recounts both insert slot 0.)
    LOCK TABLE tasker.state_counts IN EXCLUSIVE MODE;
    DELETE FROM tasker.state_counts;
    PERFORM tasker._forget_state_counts('task');
    PERFORM tasker._forget_state_counts('step');
    INSERT INTO tasker.state_counts
    SELECT 0, t.*, s.*
      FROM (SELECT count(*) FILTER (WHERE current_state = 'pending'),
                   count(*) FILTER (WHERE current_state = 'in_progress'),
                   count(*) FILTER (WHERE current_state = 'complete'),
                   count(*) FILTER (WHERE current_state = 'error'),
                   count(*) FILTER (WHERE current_state = 'cancelled'),
                   count(*) FILTER (WHERE current_state = 'resolved_manually')
              FROM tasker.tasks) t,
           (SELECT count(*) FILTER (WHERE current_state = 'pending'),
                   count(*) FILTER (WHERE current_state = 'in_progress'),
                   count(*) FILTER (WHERE current_state = 'waiting_for_retry'),
                   count(*) FILTER (WHERE current_state = 'complete'),
                   count(*) FILTER (WHERE current_state = 'error'),
                   count(*) FILTER (WHERE current_state = 'error' AND attempts >= max_attempts),
                   count(*) FILTER (WHERE current_state = 'cancelled'),
                   count(*) FILTER (WHERE current_state = 'resolved_manually')
              FROM tasker.workflow_steps) s;
END $$;
COMMENT ON FUNCTION tasker.recount_states() IS
    'Rebuilds the task and step state counters from a full count (after a restore with triggers disabled, or to check them); writers wait at commit while it counts.';

-- Steps waiting out a retry delay, for in_backoff_steps (a few rows: only
-- steps in waiting_for_retry are in it).
CREATE INDEX workflow_steps_backoff_idx ON tasker.workflow_steps (next_attempt_at)
    WHERE current_state = 'waiting_for_retry';

-- Argument checks --------------------------------------------------------

-- _require_tasks raises 22004 for a NULL array or element and 42704 naming
-- the first task that does not exist.
CREATE FUNCTION tasker._require_tasks(p_task_ids bigint[], argument text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing bigint;
BEGIN
    PERFORM tasker._require(p_task_ids, argument);
    IF array_position(p_task_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'argument "%" must not contain nulls', argument
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT min(id) INTO missing
      FROM unnest(p_task_ids) id
     WHERE NOT EXISTS (SELECT 1 FROM tasker.tasks t WHERE t.task_id = id);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'task % does not exist', missing
            USING ERRCODE = 'undefined_object';
    END IF;
END $$;
COMMENT ON FUNCTION tasker._require_tasks(bigint[], text) IS
    'Raises 22004 for a NULL array or element and 42704 for the first task that does not exist.';

-- Step readiness ---------------------------------------------------------
-- The diagnostic readiness test, in C (src/readiness.c, where the rules
-- are spelled out): for each step of the given tasks, from the tasks' own
-- edges and the states of each step's parents — never from pending_parents,
-- the hot path's bookkeeping, which the readiness_agreement test compares
-- it with.  A parent counts as done when it is complete or
-- resolved_manually, or skippable and failed for good; a step may be
-- attempted while attempts < max_attempts, the first time (pending) or,
-- when retryable, again; it is ready when it is pending or
-- waiting_for_retry, its parents are done, it may be attempted and
-- next_attempt_at is NULL or has come.

-- _step_readiness adds skippable and runnable (ready but for the retry
-- delay) for the execution context.
CREATE FUNCTION tasker._step_readiness(input_task_ids bigint[])
    RETURNS TABLE (workflow_step_id bigint, task_id bigint, named_step_id integer, name text,
                   current_state text, dependencies_satisfied boolean, retry_eligible boolean,
                   ready_for_execution boolean, last_failure_at timestamptz,
                   next_retry_at timestamptz, total_parents integer, completed_parents integer,
                   attempts integer, retry_limit integer, backoff_request_seconds integer,
                   last_attempted_at timestamptz, skippable boolean, runnable boolean)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'tasker_step_readiness_status_batch';
COMMENT ON FUNCTION tasker._step_readiness(bigint[]) IS
    'step_readiness_status_batch plus skippable and runnable (ready but for the retry delay), for the execution context.';

CREATE FUNCTION tasker.step_readiness_status(input_task_id bigint, step_ids bigint[] DEFAULT NULL)
    RETURNS TABLE (workflow_step_id bigint, task_id bigint, named_step_id integer, name text,
                   current_state text, dependencies_satisfied boolean, retry_eligible boolean,
                   ready_for_execution boolean, last_failure_at timestamptz,
                   next_retry_at timestamptz, total_parents integer, completed_parents integer,
                   attempts integer, retry_limit integer, backoff_request_seconds integer,
                   last_attempted_at timestamptz)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'tasker_step_readiness_status';
COMMENT ON FUNCTION tasker.step_readiness_status(bigint, bigint[]) IS
    'Readiness of each step of a task (or of the given steps), recomputed from its edges and its parents'' states; ready_for_execution names exactly what the claim path would claim.';

CREATE FUNCTION tasker.step_readiness_status_batch(input_task_ids bigint[])
    RETURNS TABLE (workflow_step_id bigint, task_id bigint, named_step_id integer, name text,
                   current_state text, dependencies_satisfied boolean, retry_eligible boolean,
                   ready_for_execution boolean, last_failure_at timestamptz,
                   next_retry_at timestamptz, total_parents integer, completed_parents integer,
                   attempts integer, retry_limit integer, backoff_request_seconds integer,
                   last_attempted_at timestamptz)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'tasker_step_readiness_status_batch';
COMMENT ON FUNCTION tasker.step_readiness_status_batch(bigint[]) IS
    'step_readiness_status for several tasks at once, ordered by task and step.';

-- Execution context ------------------------------------------------------

-- _execution_contexts summarizes each task's steps.  execution_status, in
-- order of precedence (the first that applies):
--   cancelled                 the task was cancelled
--   has_ready_steps           a step can be claimed now
--   processing                a step is in progress
--   all_complete              every step is complete, resolved_manually or skipped
--   blocked_by_failures       a step failed for good and nothing can still run
--                             (the task is, or is about to be, in error)
--   waiting_for_dependencies  otherwise: steps wait on parents, or out a retry delay
CREATE FUNCTION tasker._execution_contexts(p_task_ids bigint[])
    RETURNS TABLE (task_id bigint, named_task_id integer, status text, total_steps bigint,
                   pending_steps bigint, in_progress_steps bigint, completed_steps bigint,
                   failed_steps bigint, ready_steps bigint, execution_status text,
                   recommended_action text, completion_percentage numeric, health_status text,
                   waiting_for_retry_steps bigint, skipped_steps bigint, cancelled_steps bigint)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    -- by primary key whatever the ids: no need to plan each call anew
    SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    WITH counts AS (
        SELECT r.task_id,
               count(*) AS total,
               count(*) FILTER (WHERE r.current_state = 'pending') AS pending,
               count(*) FILTER (WHERE r.current_state = 'waiting_for_retry') AS retrying,
               count(*) FILTER (WHERE r.current_state = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')) AS completed,
               count(*) FILTER (WHERE r.current_state = 'error' AND r.skippable) AS skipped,
               count(*) FILTER (WHERE r.current_state = 'error' AND NOT r.skippable) AS failed,
               count(*) FILTER (WHERE r.current_state = 'cancelled') AS cancelled,
               count(*) FILTER (WHERE r.ready_for_execution) AS ready,
               count(*) FILTER (WHERE r.runnable) AS runnable
          FROM tasker._step_readiness(p_task_ids) r
         GROUP BY r.task_id
    ), judged AS (
        SELECT t.task_id, t.named_task_id, t.current_state,
               coalesce(c.total, 0) AS total, coalesce(c.pending, 0) AS pending,
               coalesce(c.retrying, 0) AS retrying, coalesce(c.in_progress, 0) AS in_progress,
               coalesce(c.completed, 0) AS completed, coalesce(c.skipped, 0) AS skipped,
               coalesce(c.failed, 0) AS failed, coalesce(c.cancelled, 0) AS cancelled,
               coalesce(c.ready, 0) AS ready,
               CASE
                   WHEN t.current_state = 'cancelled' THEN 'cancelled'
                   WHEN coalesce(c.ready, 0) > 0 THEN 'has_ready_steps'
                   WHEN coalesce(c.in_progress, 0) > 0 THEN 'processing'
                   WHEN coalesce(c.completed + c.skipped = c.total, true) THEN 'all_complete'
                   WHEN c.failed > 0 AND c.runnable = 0 THEN 'blocked_by_failures'
                   ELSE 'waiting_for_dependencies'
               END AS execution_status
          FROM tasker.tasks t
          LEFT JOIN counts c ON c.task_id = t.task_id
         WHERE t.task_id = ANY (p_task_ids)
    )
    SELECT j.task_id, j.named_task_id, j.current_state, j.total, j.pending, j.in_progress,
           j.completed, j.failed, j.ready, j.execution_status,
           CASE j.execution_status
               WHEN 'cancelled' THEN 'none'
               WHEN 'has_ready_steps' THEN 'execute_ready_steps'
               WHEN 'processing' THEN 'wait_for_completion'
               WHEN 'all_complete' THEN 'finalize_task'
               WHEN 'blocked_by_failures' THEN 'handle_failures'
               ELSE 'wait_for_dependencies'
           END,
           CASE WHEN j.total = 0 THEN 100.00
                ELSE round(100.0 * (j.completed + j.skipped) / j.total, 2) END,
           CASE
               WHEN j.execution_status = 'cancelled' THEN 'unknown'
               WHEN j.execution_status = 'blocked_by_failures' THEN 'blocked'
               WHEN j.failed + j.retrying > 0 THEN 'recovering'
               ELSE 'healthy'
           END,
           j.retrying, j.skipped, j.cancelled
      FROM judged j
     ORDER BY j.task_id;
END $$;
COMMENT ON FUNCTION tasker._execution_contexts(bigint[]) IS
    'The execution contexts of existing tasks (task_execution_context and task_execution_contexts check their input, then call this).';

CREATE FUNCTION tasker.task_execution_context(input_task_id bigint)
    RETURNS TABLE (task_id bigint, named_task_id integer, status text, total_steps bigint,
                   pending_steps bigint, in_progress_steps bigint, completed_steps bigint,
                   failed_steps bigint, ready_steps bigint, execution_status text,
                   recommended_action text, completion_percentage numeric, health_status text,
                   waiting_for_retry_steps bigint, skipped_steps bigint, cancelled_steps bigint)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tasker._authorize_task(input_task_id, 'input_task_id');
    PERFORM tasker._require(input_task_id, 'input_task_id');
    PERFORM tasker._require_tasks(ARRAY[input_task_id], 'input_task_id');
    RETURN QUERY SELECT * FROM tasker._execution_contexts(ARRAY[input_task_id]);
END $$;
COMMENT ON FUNCTION tasker.task_execution_context(bigint) IS
    'A task''s step counts, execution_status (cancelled > has_ready_steps > processing > all_complete > blocked_by_failures > waiting_for_dependencies), recommended_action, completion_percentage and health_status.';

CREATE FUNCTION tasker.task_execution_contexts(input_task_ids bigint[])
    RETURNS TABLE (task_id bigint, named_task_id integer, status text, total_steps bigint,
                   pending_steps bigint, in_progress_steps bigint, completed_steps bigint,
                   failed_steps bigint, ready_steps bigint, execution_status text,
                   recommended_action text, completion_percentage numeric, health_status text,
                   waiting_for_retry_steps bigint, skipped_steps bigint, cancelled_steps bigint)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tasker._require_tasks(input_task_ids, 'input_task_ids');
    PERFORM tasker._authorize_tasks(input_task_ids);
    RETURN QUERY SELECT * FROM tasker._execution_contexts(input_task_ids);
END $$;
COMMENT ON FUNCTION tasker.task_execution_contexts(bigint[]) IS
    'task_execution_context for several tasks at once, ordered by task.';

-- Dependency levels ------------------------------------------------------

-- _longest_path_levels returns, for each node id, the number of edges on
-- the longest path to it from a root: Kahn's algorithm in C, each node and
-- edge visited once (the Rails engine's recursive CTE enumerates every
-- path, which is exponential in the depth of a layered DAG).
CREATE FUNCTION tasker._longest_path_levels(ids bigint[], edge_from bigint[], edge_to bigint[])
    RETURNS integer[] LANGUAGE c IMMUTABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'tasker_longest_path_levels';
COMMENT ON FUNCTION tasker._longest_path_levels(bigint[], bigint[], bigint[]) IS
    'For each node id, the number of edges on the longest path to it from a root (Kahn''s algorithm); 42P17 on a cycle.';

CREATE FUNCTION tasker.dependency_levels(input_task_id bigint)
    RETURNS TABLE (workflow_step_id bigint, dependency_level integer)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ids bigint[];
    edge_from bigint[];
    edge_to bigint[];
BEGIN
    PERFORM tasker._authorize_task(input_task_id, 'input_task_id');
    PERFORM tasker._require(input_task_id, 'input_task_id');
    PERFORM tasker._require_tasks(ARRAY[input_task_id], 'input_task_id');
    SELECT coalesce(array_agg(s.workflow_step_id), '{}') INTO ids
      FROM tasker.workflow_steps s WHERE s.task_id = input_task_id;
    SELECT coalesce(array_agg(e.from_step_id), '{}'), coalesce(array_agg(e.to_step_id), '{}')
      INTO edge_from, edge_to
      FROM tasker.workflow_step_edges e WHERE e.task_id = input_task_id;
    RETURN QUERY
    SELECT u.id, u.level
      FROM unnest(ids, tasker._longest_path_levels(ids, edge_from, edge_to)) AS u(id, level)
     ORDER BY u.level, u.id;
END $$;
COMMENT ON FUNCTION tasker.dependency_levels(bigint) IS
    'Each step of a task with its dependency level: the longest path to it from a root (roots are 0), ordered by level; linear in the edges.';

CREATE FUNCTION tasker.template_dependency_levels(namespace text, name text, version text DEFAULT NULL)
    RETURNS TABLE (named_step_id integer, step_name text, dependency_level integer)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    template_id integer;
    ids bigint[];
    edge_from bigint[];
    edge_to bigint[];
BEGIN
    PERFORM tasker._authorize('submitter', namespace, 'namespace');
    template_id := tasker.find_template(namespace, name, version);
    SELECT coalesce(array_agg(s.named_step_id), '{}') INTO ids
      FROM tasker.named_steps s WHERE s.named_task_id = template_id;
    SELECT coalesce(array_agg(e.from_named_step_id), '{}'), coalesce(array_agg(e.to_named_step_id), '{}')
      INTO edge_from, edge_to
      FROM tasker.named_step_edges e WHERE e.named_task_id = template_id;
    RETURN QUERY
    SELECT s.named_step_id, s.name, u.level
      FROM unnest(ids, tasker._longest_path_levels(ids, edge_from, edge_to)) AS u(id, level)
      JOIN tasker.named_steps s ON s.named_step_id = u.id
     ORDER BY u.level, s.position;
END $$;
COMMENT ON FUNCTION tasker.template_dependency_levels(text, text, text) IS
    'dependency_levels of a template version (the newest when version is NULL): each step with the longest path to it from a root, ordered by level and position.';

-- Health -----------------------------------------------------------------

CREATE FUNCTION tasker.system_health_counts()
    RETURNS TABLE (total_tasks bigint, pending_tasks bigint, in_progress_tasks bigint,
                   complete_tasks bigint, error_tasks bigint, cancelled_tasks bigint,
                   total_steps bigint, pending_steps bigint, in_progress_steps bigint,
                   complete_steps bigint, error_steps bigint, retryable_error_steps bigint,
                   exhausted_retry_steps bigint, in_backoff_steps bigint,
                   active_connections bigint, max_connections bigint,
                   resolved_manually_tasks bigint, cancelled_steps bigint,
                   resolved_manually_steps bigint, busy_worker_slots bigint,
                   free_worker_slots bigint)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    u bigint[] := tasker._unflushed_state_counts();     -- this transaction's own changes
BEGIN
    RETURN QUERY
    WITH t AS (
        SELECT coalesce(sum(c.tasks_pending), 0) + u[1] AS pending,
               coalesce(sum(c.tasks_in_progress), 0) + u[2] AS in_progress,
               coalesce(sum(c.tasks_complete), 0) + u[3] AS complete,
               coalesce(sum(c.tasks_error), 0) + u[4] AS error,
               coalesce(sum(c.tasks_cancelled), 0) + u[5] AS cancelled,
               coalesce(sum(c.tasks_resolved_manually), 0) + u[6] AS resolved_manually
          FROM tasker.state_counts c
    ), s AS (
        SELECT coalesce(sum(c.steps_pending), 0) + u[7] AS pending,
               coalesce(sum(c.steps_in_progress), 0) + u[8] AS in_progress,
               coalesce(sum(c.steps_waiting_for_retry), 0) + u[9] AS waiting_for_retry,
               coalesce(sum(c.steps_complete), 0) + u[10] AS complete,
               coalesce(sum(c.steps_error), 0) + u[11] AS error,
               coalesce(sum(c.steps_exhausted), 0) + u[12] AS exhausted,
               coalesce(sum(c.steps_cancelled), 0) + u[13] AS cancelled,
               coalesce(sum(c.steps_resolved_manually), 0) + u[14] AS resolved_manually
          FROM tasker.state_counts c
    ), backoff AS (
        SELECT count(*) AS n FROM tasker.workflow_steps w
         WHERE w.current_state = 'waiting_for_retry' AND w.next_attempt_at > now()
    ), activity AS (
        SELECT count(*) FILTER (WHERE a.datname = current_database() AND a.state = 'active'
                                  AND a.backend_type = 'client backend') AS active,
               count(*) FILTER (WHERE a.backend_type NOT IN (
                   'client backend', 'autovacuum launcher', 'autovacuum worker',
                   'background writer', 'checkpointer', 'walwriter', 'archiver', 'startup',
                   'walreceiver', 'walsender', 'logger', 'standalone backend',
                   'walsummarizer', 'slotsync worker', 'io worker')) AS workers
          FROM pg_stat_activity a
    )
    SELECT (t.pending + t.in_progress + t.complete + t.error + t.cancelled + t.resolved_manually)::bigint,
           t.pending::bigint, t.in_progress::bigint, t.complete::bigint, t.error::bigint,
           t.cancelled::bigint,
           (s.pending + s.in_progress + s.waiting_for_retry + s.complete + s.error + s.cancelled
            + s.resolved_manually)::bigint,
           s.pending::bigint, s.in_progress::bigint, s.complete::bigint, s.error::bigint,
           s.waiting_for_retry::bigint, s.exhausted::bigint, b.n,
           act.active, current_setting('max_connections')::bigint,
           t.resolved_manually::bigint, s.cancelled::bigint, s.resolved_manually::bigint,
           act.workers,
           greatest(current_setting('max_worker_processes')::bigint - act.workers, 0)
      FROM t, s, backoff b, activity act;
END $$;
COMMENT ON FUNCTION tasker.system_health_counts() IS
    'Tasks and steps per state (from maintained counters), retryable and exhausted failures, steps in backoff, active and max connections, busy and free background-worker slots.';

-- Analytics --------------------------------------------------------------

CREATE FUNCTION tasker.analytics_metrics(since timestamptz DEFAULT NULL)
    RETURNS TABLE (active_tasks_count bigint, total_namespaces_count bigint,
                   unique_task_types_count bigint, system_health_score numeric,
                   task_throughput bigint, completion_count bigint, error_count bigint,
                   completion_rate numeric, error_rate numeric, avg_task_duration numeric,
                   avg_step_duration numeric, step_throughput bigint,
                   analysis_period_start timestamptz, calculated_at timestamptz)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    -- (its estimates grow with the window: compiling it would cost more than running it)
    SET jit = off AS $$
DECLARE
    analysis_start timestamptz := coalesce(since, now() - interval '1 hour');
    u bigint[] := tasker._unflushed_state_counts();
BEGIN
    RETURN QUERY
    WITH active AS (
        SELECT coalesce(sum(c.tasks_pending + c.tasks_in_progress), 0) + u[1] + u[2] AS n
          FROM tasker.state_counts c
    ), used_templates AS (
        SELECT nt.namespace_id, nt.name
          FROM tasker.named_tasks nt
         WHERE EXISTS (SELECT 1 FROM tasker.tasks x WHERE x.named_task_id = nt.named_task_id)
    ), kinds AS (
        SELECT count(DISTINCT u.namespace_id) AS namespaces,
               count(DISTINCT (u.namespace_id, u.name)) AS task_types
          FROM used_templates u
    ), task_ends AS (
        -- each task that finished in the window, with its last finishing move
        SELECT DISTINCT ON (tr.task_id) tr.task_id, tr.to_state, tr.created_at
          FROM tasker.task_transitions tr
         WHERE tr.created_at >= analysis_start
           AND tr.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
         ORDER BY tr.task_id, tr.created_at DESC, tr.sort_key DESC
    ), task_period AS (
        -- (a lookup per completed task, never a scan of tasks)
        SELECT count(*) AS throughput,
               count(*) FILTER (WHERE e.to_state = 'complete') AS completions,
               count(*) FILTER (WHERE e.to_state = 'error') AS errors,
               avg((SELECT extract(epoch FROM e.created_at - x.created_at)
                      FROM tasker.tasks x WHERE x.task_id = e.task_id))
                   FILTER (WHERE e.to_state = 'complete') AS avg_seconds
          FROM task_ends e
    ), step_ends AS (
        SELECT DISTINCT ON (tr.task_id, tr.workflow_step_id)
               tr.task_id, tr.workflow_step_id, tr.to_state, tr.created_at
          FROM tasker.workflow_step_transitions tr
         WHERE tr.created_at >= analysis_start
           AND tr.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
         ORDER BY tr.task_id, tr.workflow_step_id, tr.created_at DESC, tr.sort_key DESC
    ), step_period AS (
        SELECT count(*) AS throughput,
               avg((SELECT extract(epoch FROM e.created_at - w.created_at)
                      FROM tasker.workflow_steps w
                     WHERE w.task_id = e.task_id AND w.workflow_step_id = e.workflow_step_id))
                   FILTER (WHERE e.to_state = 'complete') AS avg_seconds
          FROM step_ends e
    )
    SELECT a.n::bigint, k.namespaces, k.task_types,
           CASE WHEN tp.completions + tp.errors > 0
                THEN round(tp.completions::numeric / (tp.completions + tp.errors), 3)
                ELSE 1.000 END,
           tp.throughput, tp.completions, tp.errors,
           CASE WHEN tp.throughput > 0 THEN round(100.0 * tp.completions / tp.throughput, 2)
                ELSE 0.00 END,
           CASE WHEN tp.throughput > 0 THEN round(100.0 * tp.errors / tp.throughput, 2)
                ELSE 0.00 END,
           round(coalesce(tp.avg_seconds, 0), 3),
           round(coalesce(sp.avg_seconds, 0), 3),
           sp.throughput,
           analysis_start, now()
      FROM active a, kinds k, task_period tp, step_period sp;
END $$;
COMMENT ON FUNCTION tasker.analytics_metrics(timestamptz) IS
    'Active tasks, namespaces and task types in use, and from the transition log since the given time (default: the last hour): tasks and steps finished, completion and error counts and rates, health score, average task and step durations.';

-- _template_filter_check raises 42704 when namespace / name / version
-- filters match no registered template (a typo, rather than no data).
CREATE FUNCTION tasker._template_filter_check(namespace_filter text, task_name_filter text,
                                              version_filter text)
    RETURNS void LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(namespace_filter, task_name_filter, version_filter) IS NOT NULL
       AND NOT EXISTS (
           SELECT 1 FROM tasker.named_tasks nt JOIN tasker.namespaces ns USING (namespace_id)
            WHERE (namespace_filter IS NULL OR ns.name = namespace_filter)
              AND (task_name_filter IS NULL OR nt.name = task_name_filter)
              AND (version_filter IS NULL OR nt.version = version_filter)) THEN
        RAISE EXCEPTION 'no task template matches namespace %, name % and version %',
            coalesce(quote_literal(namespace_filter), 'any'),
            coalesce(quote_literal(task_name_filter), 'any'),
            coalesce(quote_literal(version_filter), 'any')
            USING ERRCODE = 'undefined_object',
                  HINT = 'tasker.templates lists the registered templates.';
    END IF;
END $$;
COMMENT ON FUNCTION tasker._template_filter_check(text, text, text) IS
    'Raises 42704 when namespace, name and version filters match no registered template.';

-- _check_limit validates limit_count.
CREATE FUNCTION tasker._check_limit(limit_count integer) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tasker._require(limit_count, 'limit_count');
    IF limit_count < 1 THEN
        RAISE EXCEPTION 'limit_count must be positive, not %', limit_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;
COMMENT ON FUNCTION tasker._check_limit(integer) IS
    'Raises 22004 for a NULL limit_count and 22023 for one below 1.';

CREATE FUNCTION tasker.slowest_steps(since timestamptz DEFAULT NULL, limit_count integer DEFAULT 10,
                                     namespace_filter text DEFAULT NULL,
                                     task_name_filter text DEFAULT NULL,
                                     version_filter text DEFAULT NULL)
    RETURNS TABLE (workflow_step_id bigint, task_id bigint, step_name text, task_name text,
                   namespace_name text, version text, duration_seconds numeric,
                   attempts integer, created_at timestamptz, completed_at timestamptz,
                   retryable boolean, step_status text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    -- (its estimates grow with the window: compiling it would cost more than running it)
    SET jit = off AS $$
DECLARE
    analysis_start timestamptz := coalesce(since, now() - interval '24 hours');
BEGIN
    PERFORM tasker._check_limit(limit_count);
    PERFORM tasker._template_filter_check(namespace_filter, task_name_filter, version_filter);
    RETURN QUERY
    SELECT s.workflow_step_id, s.task_id, s.name, nt.name, ns.name, nt.version,
           round(extract(epoch FROM s.completed_at - s.created_at), 3) AS duration,
           s.attempts, s.created_at, s.completed_at, s.retryable, s.current_state
      FROM tasker.named_tasks nt
      JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
      JOIN tasker.tasks t ON t.named_task_id = nt.named_task_id AND t.created_at > analysis_start
      JOIN tasker.workflow_steps s ON s.task_id = t.task_id
     WHERE s.current_state = 'complete'
       AND s.created_at > analysis_start
       AND s.completed_at > s.created_at
       AND (namespace_filter IS NULL OR ns.name = namespace_filter)
       AND (task_name_filter IS NULL OR nt.name = task_name_filter)
       AND (version_filter IS NULL OR nt.version = version_filter)
     ORDER BY duration DESC, s.workflow_step_id
     LIMIT limit_count;
END $$;
COMMENT ON FUNCTION tasker.slowest_steps(timestamptz, integer, text, text, text) IS
    'The completed steps with the longest time from creation to completion, of tasks created since the given time (default: the last 24 hours), optionally of one namespace, template name and version.';

CREATE FUNCTION tasker.slowest_tasks(since timestamptz DEFAULT NULL, limit_count integer DEFAULT 10,
                                     namespace_filter text DEFAULT NULL,
                                     task_name_filter text DEFAULT NULL,
                                     version_filter text DEFAULT NULL)
    RETURNS TABLE (task_id bigint, task_name text, namespace_name text, version text,
                   duration_seconds numeric, step_count bigint, completed_steps bigint,
                   error_steps bigint, created_at timestamptz, completed_at timestamptz,
                   initiator text, source_system text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    -- (its estimates grow with the window: compiling it would cost more than running it)
    SET jit = off AS $$
DECLARE
    analysis_start timestamptz := coalesce(since, now() - interval '24 hours');
BEGIN
    PERFORM tasker._check_limit(limit_count);
    PERFORM tasker._template_filter_check(namespace_filter, task_name_filter, version_filter);
    RETURN QUERY
    SELECT t.task_id, nt.name, ns.name, nt.version,
           round(extract(epoch FROM x.latest - t.created_at), 3) AS duration,
           x.step_count, x.completed, x.errors, t.created_at, x.latest,
           t.initiator, t.source_system
      FROM tasker.named_tasks nt
      JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
      JOIN tasker.tasks t ON t.named_task_id = nt.named_task_id AND t.created_at > analysis_start
      CROSS JOIN LATERAL (
          SELECT count(*) AS step_count,
                 count(*) FILTER (WHERE s.current_state = 'complete') AS completed,
                 count(*) FILTER (WHERE s.current_state = 'error') AS errors,
                 max(s.completed_at) FILTER (WHERE s.current_state IN ('complete', 'error')) AS latest
            FROM tasker.workflow_steps s
           WHERE s.task_id = t.task_id) x
     WHERE x.latest IS NOT NULL
       AND (namespace_filter IS NULL OR ns.name = namespace_filter)
       AND (task_name_filter IS NULL OR nt.name = task_name_filter)
       AND (version_filter IS NULL OR nt.version = version_filter)
     ORDER BY duration DESC, t.task_id
     LIMIT limit_count;
END $$;
COMMENT ON FUNCTION tasker.slowest_tasks(timestamptz, integer, text, text, text) IS
    'The tasks created since the given time (default: the last 24 hours) with the longest time from creation to their last finished (complete or error) step, optionally of one namespace, template name and version.';
--------------------------------------------------------------------------
-- 60_workers.sql: what the background workers call, the handler helpers,
-- dynamic concurrency and the tasker.workers view.
--------------------------------------------------------------------------

CREATE FUNCTION tasker._wake_launcher() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_wake_launcher';

-- Handler helpers ----------------------------------------------------------

CREATE FUNCTION tasker.fail_permanently(message text, detail text DEFAULT NULL) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_fail_permanently';
COMMENT ON FUNCTION tasker.fail_permanently(text, text) IS
    'Raised from a SQL handler: the step fails for good (SQLSTATE TK001), no retry.';

CREATE FUNCTION tasker.retry_after(seconds integer, message text DEFAULT NULL) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_retry_after';
COMMENT ON FUNCTION tasker.retry_after(integer, text) IS
    'Raised from a SQL handler: a retryable failure (SQLSTATE TK002) whose next attempt comes after the given seconds.';

-- Executors ------------------------------------------------------------------

-- _claim_sql_steps claims ready SQL-handler steps for an executor, with
-- what it needs to run them: the handler, the role to run it as, the
-- statement timeout.  (PL/pgSQL keeps its plan for the session; a SQL
-- function in FROM would be planned at every call.)
CREATE FUNCTION tasker._claim_sql_steps(worker text, max_steps integer)
    RETURNS TABLE (step_id bigint, task_id bigint, step_name text, attempt integer, input jsonb,
                   handler oid, owner_role oid, timeout_ms bigint, handler_owner oid)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
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

-- Dispatcher -----------------------------------------------------------------

-- _recover_sql_steps counts as failed every SQL-handler step in progress
-- whose executor is gone (it crashed, was killed, or the server restarted).
-- live_executors was read at listed_at; a step claimed since then may be
-- held by an executor that started after that read, so it is left alone
-- (executors register before they claim).
CREATE FUNCTION tasker._recover_sql_steps(live_executors text[], listed_at timestamptz)
    RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    step tasker.workflow_steps;
    recovered integer := 0;
BEGIN
    FOR step IN
        SELECT * FROM tasker.workflow_steps
         WHERE current_state = 'in_progress' AND handler IS NOT NULL
           AND lease_expires_at IS NOT NULL
           AND claimed_by <> ALL (coalesce(live_executors, '{}'))
           AND last_attempted_at < listed_at
         ORDER BY task_id + 0, workflow_step_id   -- as reap_expired_leases
           FOR UPDATE SKIP LOCKED
    LOOP
        -- one step that cannot be recorded must not hold up the others, nor
        -- the rest of the dispatcher's round (which starts the executors)
        BEGIN
            PERFORM tasker._record_failure(step,
                jsonb_build_object('message', 'executor exited mid-step', 'executor', step.claimed_by),
                true, NULL, 'executor_lost');
            recovered := recovered + 1;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'could not recover step %: %', step.workflow_step_id, SQLERRM
                USING ERRCODE = SQLSTATE;
        END;
    END LOOP;
    RETURN recovered;
END $$;

-- _dispatcher_tick is one round of the dispatcher: with housekeeping (at
-- most once per poll interval) it reaps expired leases, recovers orphaned
-- SQL steps and tells external queues about retries that came due since
-- the last round; always it returns how many SQL steps are ready (counted
-- up to tasker.max_executors, all the dispatcher can use: it runs at every
-- commit that makes steps ready, and counting a long queue cost
-- milliseconds each time) and in how many ms the next backing-off one
-- comes due.  Like every function the workers call on a timer, it keeps
-- its plans for the life of the worker: enable_seqscan = off keeps a plan
-- made while the tables were small from scanning them once they are not
-- (12 ms a round, most of a core, under a DAG load).
CREATE FUNCTION tasker._dispatcher_tick(live_executors text[], since timestamptz,
                                        housekeeping boolean, listed_at timestamptz,
                                        OUT ready integer, OUT next_due_ms double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
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

-- Dynamic concurrency --------------------------------------------------------

-- _concurrency_inputs reads the gauges of the formula from
-- system_health_counts(): active client connections and background-worker
-- slots in use, and the task and step load — the share of unfinished
-- tasks, and of unfinished steps, that is in progress.
CREATE FUNCTION tasker._concurrency_inputs(
    OUT active_connections integer, OUT max_connections integer,
    OUT busy_workers integer, OUT max_workers integer,
    OUT task_load double precision, OUT step_load double precision)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT h.active_connections::integer, h.max_connections::integer,
           h.busy_worker_slots::integer, (h.busy_worker_slots + h.free_worker_slots)::integer,
           h.in_progress_tasks::double precision
               / greatest(h.pending_tasks + h.in_progress_tasks, 1),
           h.in_progress_steps::double precision
               / greatest(h.pending_steps + h.in_progress_steps + h.retryable_error_steps, 1)
      FROM tasker.system_health_counts() h
$$;

CREATE FUNCTION tasker.concurrency(refresh boolean DEFAULT false,
    OUT concurrency integer, OUT slot_term integer, OUT load_term integer,
    OUT pressure_level text, OUT connection_pressure double precision,
    OUT worker_pressure double precision, OUT active_connections integer,
    OUT max_connections integer, OUT busy_workers integer, OUT max_workers integer,
    OUT task_load double precision, OUT step_load double precision,
    OUT combined_load double precision, OUT min_concurrent_steps integer,
    OUT max_concurrent_steps integer, OUT computed_at timestamptz)
    LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_concurrency';
COMMENT ON FUNCTION tasker.concurrency(boolean) IS
    'The dynamic concurrency figure and every input to it (cached for tasker.concurrency_cache_duration unless refresh).';

CREATE FUNCTION tasker.concurrency_formula(active_connections integer, max_connections integer,
    busy_workers integer, max_workers integer, task_load double precision,
    step_load double precision, min_concurrent_steps integer, max_concurrent_steps integer,
    OUT concurrency integer, OUT slot_term integer, OUT load_term integer,
    OUT pressure_level text, OUT connection_pressure double precision,
    OUT worker_pressure double precision, OUT active_connections_ integer,
    OUT max_connections_ integer, OUT busy_workers_ integer, OUT max_workers_ integer,
    OUT task_load_ double precision, OUT step_load_ double precision,
    OUT combined_load double precision, OUT min_concurrent_steps_ integer,
    OUT max_concurrent_steps_ integer, OUT computed_at timestamptz)
    LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'tasker_concurrency_formula';
COMMENT ON FUNCTION tasker.concurrency_formula(integer, integer, integer, integer, double precision, double precision, integer, integer) IS
    'The dynamic concurrency formula applied to given inputs.';

-- Workers view -------------------------------------------------------------------

CREATE FUNCTION tasker._worker_list(OUT pid integer, OUT database_id oid, OUT kind text,
                                    OUT role_id oid, OUT step_id bigint, OUT since timestamptz)
    RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_worker_list';

CREATE VIEW tasker.workers AS
SELECT w.pid, d.datname AS database, w.role_id::regrole AS role, w.kind, w.step_id,
       s.task_id, s.name AS step_name, w.since
  FROM tasker._worker_list() w
  LEFT JOIN pg_catalog.pg_database d ON d.oid = w.database_id
  LEFT JOIN tasker.workflow_steps s
         ON s.workflow_step_id = w.step_id AND w.database_id = (
            SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());
COMMENT ON VIEW tasker.workers IS
    'tasker''s background workers: the launcher, each database''s dispatcher, and the executors with the step each runs.';
--------------------------------------------------------------------------
-- 70_operations.sql: what an operator reads at a psql prompt — DAG
-- pictures, and views with the names one would guess.
--------------------------------------------------------------------------

-- _graph renders nodes and edges as Mermaid or Graphviz DOT, nodes
-- coloured by state.
CREATE FUNCTION tasker._graph(nodes jsonb, edges jsonb, format text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    colours CONSTANT jsonb := '{"pending": "#e0e0e0", "in_progress": "#90caf9",
        "waiting_for_retry": "#ffe082", "complete": "#a5d6a7", "error": "#ef9a9a",
        "cancelled": "#bdbdbd", "resolved_manually": "#ce93d8", "template": "#ffffff"}';
    out text;
BEGIN
    IF format = 'mermaid' THEN
        out := 'graph TD' || E'\n';
        out := out || coalesce((SELECT string_agg(format('    n%s["%s<br/>%s"]:::%s', n->>'id',
                       replace(n->>'name', '"', '#quot;'), n->>'state', n->>'state'), E'\n' ORDER BY (n->>'id')::bigint)
                  FROM jsonb_array_elements(nodes) n) || E'\n', '');
        out := out || coalesce((SELECT string_agg(format('    n%s --> n%s', e->>0, e->>1), E'\n' ORDER BY (e->>0)::bigint, (e->>1)::bigint)
                  FROM jsonb_array_elements(edges) e) || E'\n', '');
        out := out || (SELECT string_agg(format('    classDef %s fill:%s,stroke:#555', key, value #>> '{}'), E'\n' ORDER BY key)
                  FROM jsonb_each(colours)) || E'\n';
        RETURN out;
    ELSIF format = 'dot' THEN
        out := 'digraph task {' || E'\n' || '    rankdir=TB;' || E'\n'
               || '    node [shape=box, style="rounded,filled", fontname="Helvetica"];' || E'\n';
        out := out || coalesce((SELECT string_agg(format('    n%s [label="%s\n%s", fillcolor="%s"];', n->>'id',
                       replace(n->>'name', '"', '\"'), n->>'state', colours->>(n->>'state')), E'\n' ORDER BY (n->>'id')::bigint)
                  FROM jsonb_array_elements(nodes) n) || E'\n', '');
        out := out || coalesce((SELECT string_agg(format('    n%s -> n%s;', e->>0, e->>1), E'\n' ORDER BY (e->>0)::bigint, (e->>1)::bigint)
                  FROM jsonb_array_elements(edges) e) || E'\n', '');
        RETURN out || '}' || E'\n';
    END IF;
    RAISE EXCEPTION 'unknown graph format "%"', format
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Use "mermaid" or "dot".';
END $$;

CREATE FUNCTION tasker.task_graph(task_id bigint, format text DEFAULT 'mermaid') RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tasker._authorize_task(task_id, 'task_id');
    PERFORM tasker._require(task_id, 'task_id');
    PERFORM tasker._require(format, 'format');
    IF NOT EXISTS (SELECT 1 FROM tasker.tasks t WHERE t.task_id = task_graph.task_id) THEN
        RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'undefined_object';
    END IF;
    -- nodes are numbered by the step's position in the template, so a
    -- task's picture and its template's share their node names
    RETURN tasker._graph(
        (SELECT coalesce(jsonb_agg(jsonb_build_object('id', ns.position, 'name', s.name,
                                                      'state', s.current_state)), '[]')
           FROM tasker.workflow_steps s
           JOIN tasker.named_steps ns ON ns.named_step_id = s.named_step_id
          WHERE s.task_id = task_graph.task_id),
        (SELECT coalesce(jsonb_agg(jsonb_build_array(p.position, c.position)), '[]')
           FROM tasker.workflow_step_edges e
           JOIN tasker.workflow_steps ps ON ps.task_id = e.task_id AND ps.workflow_step_id = e.from_step_id
           JOIN tasker.named_steps p ON p.named_step_id = ps.named_step_id
           JOIN tasker.workflow_steps cs ON cs.task_id = e.task_id AND cs.workflow_step_id = e.to_step_id
           JOIN tasker.named_steps c ON c.named_step_id = cs.named_step_id
          WHERE e.task_id = task_graph.task_id),
        format);
END $$;
COMMENT ON FUNCTION tasker.task_graph(bigint, text) IS
    'A task''s DAG as Mermaid (default) or Graphviz DOT, nodes coloured by state, edges parent -> child.';

CREATE FUNCTION tasker.template_graph(namespace text, name text, version text DEFAULT NULL,
                                      format text DEFAULT 'mermaid') RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id integer;
BEGIN
    PERFORM tasker._authorize('submitter', namespace, 'namespace');
    id := tasker.find_template(namespace, name, version);
    PERFORM tasker._require(format, 'format');
    RETURN tasker._graph(
        (SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.position, 'name', s.name,
                                                      'state', 'template')), '[]')
           FROM tasker.named_steps s WHERE s.named_task_id = id),
        (SELECT coalesce(jsonb_agg(jsonb_build_array(p.position, c.position)), '[]')
           FROM tasker.named_step_edges e
           JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
           JOIN tasker.named_steps c ON c.named_step_id = e.to_named_step_id
          WHERE e.named_task_id = id),
        format);
END $$;
COMMENT ON FUNCTION tasker.template_graph(text, text, text, text) IS
    'A template''s DAG as Mermaid (default) or Graphviz DOT.';

CREATE VIEW tasker.active_tasks AS
SELECT t.task_id, n.name AS namespace, nt.name, nt.version, t.current_state, t.priority,
       t.initiator, t.created_at, t.updated_at,
       (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_id = t.task_id) AS steps,
       (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_id = t.task_id
           AND s.current_state IN ('complete', 'resolved_manually')) AS steps_done
  FROM tasker.tasks t
  JOIN tasker.named_tasks nt USING (named_task_id)
  JOIN tasker.namespaces n USING (namespace_id)
 WHERE t.current_state IN ('pending', 'in_progress');
COMMENT ON VIEW tasker.active_tasks IS 'Tasks that are pending or in progress.';

CREATE VIEW tasker.failed_steps AS
SELECT s.task_id, s.workflow_step_id, s.name AS step_name, nt.name AS task_name, s.current_state,
       s.attempts, s.max_attempts, s.last_failure_at, s.next_attempt_at,
       s.error->>'message' AS last_error, s.error->>'sqlstate' AS sqlstate, s.error
  FROM tasker.workflow_steps s
  JOIN tasker.tasks t USING (task_id)
  JOIN tasker.named_tasks nt USING (named_task_id)
 WHERE s.current_state IN ('error', 'waiting_for_retry');
COMMENT ON VIEW tasker.failed_steps IS 'Steps that failed for good (error) or are backing off before a retry, with their last error.';

CREATE VIEW tasker.queue_depths AS
SELECT coalesce(s.handler::text, s.queue) AS queue,
       s.handler IS NOT NULL AS in_database,
       count(*) FILTER (WHERE s.current_state IN ('pending', 'waiting_for_retry')
                          AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())) AS ready,
       count(*) FILTER (WHERE s.current_state = 'waiting_for_retry' AND s.next_attempt_at > now()) AS backing_off,
       count(*) FILTER (WHERE s.current_state = 'in_progress') AS in_progress
  FROM tasker.workflow_steps s
 WHERE s.pending_parents = 0 AND s.current_state IN ('pending', 'waiting_for_retry', 'in_progress')
 GROUP BY 1, 2;
COMMENT ON VIEW tasker.queue_depths IS 'Per queue (or SQL handler): steps ready, backing off and in progress.';

CREATE VIEW tasker.stuck_steps AS
SELECT s.task_id, s.workflow_step_id, s.name AS step_name, s.current_state,
       CASE WHEN s.current_state = 'in_progress' THEN 'lease expired'
            ELSE 'ready but not claimed' END AS reason,
       CASE WHEN s.current_state = 'in_progress' THEN s.lease_expires_at
            ELSE greatest(s.updated_at, s.next_attempt_at) END AS since,
       s.claimed_by, s.attempts, coalesce(s.handler::text, 'queue ' || s.queue) AS runs_on
  FROM tasker.workflow_steps s
 WHERE (s.current_state = 'in_progress' AND s.lease_expires_at < now())
    OR (s.current_state IN ('pending', 'waiting_for_retry') AND s.pending_parents = 0
        AND greatest(s.updated_at, s.next_attempt_at)
            < now() - pg_catalog.current_setting('tasker.stuck_step_threshold')::interval);
COMMENT ON VIEW tasker.stuck_steps IS
    'Steps in progress past their lease, and ready steps no one has claimed for longer than tasker.stuck_step_threshold.';

-- _when says when a moment is, in UTC and relative to now.
CREATE FUNCTION tasker._when(t timestamptz) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN t IS NULL THEN 'never'
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                     || CASE WHEN t >= now() THEN format(' (in %s s)', ceil(extract(epoch FROM t - now())))
                             ELSE format(' (%s s ago)', floor(extract(epoch FROM now() - t))) END
           END
$$;

CREATE FUNCTION tasker.explain_task(task_id bigint) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    s record;
    lines text[] := '{}';
    total integer;
    done integer;
    parents text;
BEGIN
    PERFORM tasker._authorize_task(task_id, 'task_id');
    PERFORM tasker._require(task_id, 'task_id');
    SELECT tk.task_id, tk.current_state, n.name AS namespace, nt.name, nt.version, tk.created_at,
           tk.completed_at
      INTO t
      FROM tasker.tasks tk
      JOIN tasker.named_tasks nt USING (named_task_id)
      JOIN tasker.namespaces n USING (namespace_id)
     WHERE tk.task_id = explain_task.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'undefined_object';
    END IF;
    SELECT count(*), count(*) FILTER (WHERE current_state IN ('complete', 'resolved_manually')
                                       OR (current_state = 'error' AND skippable))
      INTO total, done FROM tasker.workflow_steps ws WHERE ws.task_id = t.task_id;
    lines := lines || format('task %s (%s.%s %s) is %s: %s of %s steps done.',
                             t.task_id, t.namespace, t.name, t.version, t.current_state, done, total);

    FOR s IN
        SELECT ws.*,
               (SELECT string_agg(format('%s (%s)', p.name, p.current_state), ', ' ORDER BY p.workflow_step_id)
                  FROM tasker.workflow_step_edges e
                  JOIN tasker.workflow_steps p ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
                 WHERE e.task_id = ws.task_id AND e.to_step_id = ws.workflow_step_id
                   AND NOT (p.current_state IN ('complete', 'resolved_manually')
                            OR (p.current_state = 'error' AND p.skippable))) AS waiting_on,
               (SELECT string_agg(c.name, ', ' ORDER BY c.workflow_step_id)
                  FROM tasker.workflow_step_edges e
                  JOIN tasker.workflow_steps c ON c.task_id = e.task_id AND c.workflow_step_id = e.to_step_id
                 WHERE e.task_id = ws.task_id AND e.from_step_id = ws.workflow_step_id) AS children
          FROM tasker.workflow_steps ws
         WHERE ws.task_id = t.task_id
         ORDER BY ws.workflow_step_id
    LOOP
        lines := lines || ('- ' || s.name || ': ' || CASE
            WHEN s.current_state = 'complete' THEN
                format('complete after %s attempt%s.', s.attempts, CASE WHEN s.attempts = 1 THEN '' ELSE 's' END)
            WHEN s.current_state = 'resolved_manually' THEN 'resolved by hand.'
            WHEN s.current_state = 'cancelled' THEN 'cancelled.'
            WHEN s.current_state = 'in_progress' THEN
                format('running attempt %s of %s (claimed by %s, lease ends %s).', s.attempts,
                       s.max_attempts, coalesce(s.claimed_by, '?'), tasker._when(s.lease_expires_at))
            WHEN s.current_state = 'error' THEN
                format('failed for good after %s attempt%s: %s%s%s', s.attempts,
                       CASE WHEN s.attempts = 1 THEN '' ELSE 's' END,
                       coalesce(s.error->>'message', s.error::text, 'no error recorded'),
                       CASE WHEN s.error ? 'sqlstate' THEN ' (SQLSTATE ' || (s.error->>'sqlstate') || ')' ELSE '' END,
                       CASE WHEN s.skippable THEN '; skippable, so its children go on.'
                            WHEN s.children IS NOT NULL THEN '; blocks ' || s.children || '.'
                            ELSE '.' END)
            WHEN s.waiting_on IS NOT NULL THEN 'waits on ' || s.waiting_on || '.'
            WHEN s.current_state = 'waiting_for_retry' AND s.next_attempt_at > now() THEN
                format('attempt %s of %s failed (%s); retries %s.', s.attempts, s.max_attempts,
                       coalesce(s.error->>'message', 'no message'), tasker._when(s.next_attempt_at))
            WHEN s.current_state = 'waiting_for_retry' THEN
                format('attempt %s of %s failed (%s); ready to retry now.', s.attempts, s.max_attempts,
                       coalesce(s.error->>'message', 'no message'))
            ELSE format('ready to run (%s).', coalesce('handler ' || s.handler::text, 'queue ' || s.queue))
        END);
    END LOOP;
    RETURN array_to_string(lines, E'\n');
END $$;
COMMENT ON FUNCTION tasker.explain_task(bigint) IS
    'A plain-text account of why a task is where it is: which steps are ready, which wait on which parents, which back off until when, which failed and why.';
--------------------------------------------------------------------------
-- 72_metrics.sql: tasker.metrics(), Prometheus exposition text.
--------------------------------------------------------------------------

CREATE FUNCTION tasker._metric_counters(OUT metric text, OUT label text, OUT value double precision)
    RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'tasker_metric_counters';

CREATE FUNCTION tasker.metrics() RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    out text[] := '{}';
    h record;
    r record;
    counters boolean := EXISTS (SELECT 1 FROM tasker._metric_counters());
BEGIN
    SELECT * INTO h FROM tasker.system_health_counts();

    out := out || '# HELP tasker_tasks Tasks in each state.'::text || '# TYPE tasker_tasks gauge'::text;
    out := out || format('tasker_tasks{state="pending"} %s', h.pending_tasks)
               || format('tasker_tasks{state="in_progress"} %s', h.in_progress_tasks)
               || format('tasker_tasks{state="complete"} %s', h.complete_tasks)
               || format('tasker_tasks{state="error"} %s', h.error_tasks)
               || format('tasker_tasks{state="cancelled"} %s', h.cancelled_tasks)
               || format('tasker_tasks{state="resolved_manually"} %s', h.resolved_manually_tasks);
    out := out || '# HELP tasker_steps Steps in each state.'::text || '# TYPE tasker_steps gauge'::text;
    out := out || format('tasker_steps{state="pending"} %s', h.pending_steps)
               || format('tasker_steps{state="in_progress"} %s', h.in_progress_steps)
               || format('tasker_steps{state="waiting_for_retry"} %s', h.retryable_error_steps)
               || format('tasker_steps{state="complete"} %s', h.complete_steps)
               || format('tasker_steps{state="error"} %s', h.error_steps)
               || format('tasker_steps{state="cancelled"} %s', h.cancelled_steps)
               || format('tasker_steps{state="resolved_manually"} %s', h.resolved_manually_steps);
    out := out || '# HELP tasker_steps_in_backoff Steps waiting out a retry delay.'::text
               || '# TYPE tasker_steps_in_backoff gauge'::text
               || format('tasker_steps_in_backoff %s', h.in_backoff_steps);

    out := out || '# HELP tasker_queue_steps Steps with no pending parents, per queue (or SQL handler) and status.'::text
               || '# TYPE tasker_queue_steps gauge'::text;
    FOR r IN SELECT * FROM tasker.queue_depths ORDER BY queue LOOP
        out := out || format('tasker_queue_steps{queue="%s",in_database="%s",status="ready"} %s',
                             replace(replace(r.queue, '\', '\\'), '"', '\"'), CASE WHEN r.in_database THEN 'true' ELSE 'false' END, r.ready)
                   || format('tasker_queue_steps{queue="%s",in_database="%s",status="backing_off"} %s',
                             replace(replace(r.queue, '\', '\\'), '"', '\"'), CASE WHEN r.in_database THEN 'true' ELSE 'false' END, r.backing_off)
                   || format('tasker_queue_steps{queue="%s",in_database="%s",status="in_progress"} %s',
                             replace(replace(r.queue, '\', '\\'), '"', '\"'), CASE WHEN r.in_database THEN 'true' ELSE 'false' END, r.in_progress);
    END LOOP;

    out := out || '# HELP tasker_workers Background workers of tasker serving this database (launcher: the cluster).'::text
               || '# TYPE tasker_workers gauge'::text;
    FOR r IN SELECT k.kind, (SELECT count(*) FROM tasker.workers w
                               WHERE w.kind = k.kind
                                 AND (w.database IS NULL OR w.database = current_database())) AS n
               FROM unnest(ARRAY['launcher', 'dispatcher', 'executor']) AS k(kind) LOOP
        out := out || format('tasker_workers{kind="%s"} %s', r.kind, r.n);
    END LOOP;

    IF counters THEN
        out := out || '# HELP tasker_task_transitions_total Task transitions into each state since the server started.'::text
                   || '# TYPE tasker_task_transitions_total counter'::text;
        FOR r IN SELECT * FROM tasker._metric_counters() WHERE metric = 'task_transitions' LOOP
            out := out || format('tasker_task_transitions_total{state="%s"} %s', r.label, r.value);
        END LOOP;
        out := out || '# HELP tasker_step_transitions_total Step transitions into each state since the server started.'::text
                   || '# TYPE tasker_step_transitions_total counter'::text;
        FOR r IN SELECT * FROM tasker._metric_counters() WHERE metric = 'step_transitions' LOOP
            out := out || format('tasker_step_transitions_total{state="%s"} %s', r.label, r.value);
        END LOOP;
        out := out || '# HELP tasker_step_duration_seconds Duration of the step attempts that completed.'::text
                   || '# TYPE tasker_step_duration_seconds histogram'::text;
        FOR r IN SELECT * FROM tasker._metric_counters() WHERE metric LIKE 'step_duration%' LOOP
            out := out || CASE r.metric
                WHEN 'step_duration_bucket' THEN format('tasker_step_duration_seconds_bucket{le="%s"} %s', r.label, r.value)
                WHEN 'step_duration_sum' THEN format('tasker_step_duration_seconds_sum %s', r.value)
                ELSE format('tasker_step_duration_seconds_count %s', r.value) END;
        END LOOP;
    END IF;
    RETURN array_to_string(out, E'\n') || E'\n';
END $$;
COMMENT ON FUNCTION tasker.metrics() IS
    'Prometheus exposition text: tasks and steps per state, queue depths, workers, transitions since start, step duration histogram.';
--------------------------------------------------------------------------
-- 75_yaml.sql: task templates written in the Rails engine's YAML
-- task-handler format (doc/yaml.md has the whole mapping).
--------------------------------------------------------------------------

CREATE FUNCTION tasker.yaml_to_jsonb(yaml text) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'tasker_yaml_to_jsonb';
COMMENT ON FUNCTION tasker.yaml_to_jsonb(text) IS
    'One YAML document as jsonb (libyaml; YAML 1.1 plain scalars typed, quoted ones strings, aliases and "<<" merges resolved); NULL when the text holds no document.';

-- What a YAML template keeps beyond the template JSON: the Rails engine's
-- handler classes and handler_config, and the document as written.
CREATE TABLE tasker.yaml_templates (
    named_task_id   integer PRIMARY KEY REFERENCES tasker.named_tasks ON DELETE CASCADE,
    task_handler_class text,
    handler_config  jsonb,                    -- the template-level handler_config
    document        jsonb NOT NULL,           -- the YAML as parsed: compared on re-registration
    source          text NOT NULL,            -- the YAML as first registered, comments and all
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker.yaml_templates IS
    'Templates registered from YAML: task_handler_class, template-level handler_config, the parsed document and its source.';

CREATE TABLE tasker.yaml_step_handlers (
    named_step_id   integer PRIMARY KEY REFERENCES tasker.named_steps ON DELETE CASCADE,
    named_task_id   integer NOT NULL REFERENCES tasker.yaml_templates ON DELETE CASCADE,
    handler_class   text,
    handler_config  jsonb,
    CHECK (handler_class IS NOT NULL OR handler_config IS NOT NULL)
);
CREATE INDEX ON tasker.yaml_step_handlers (named_task_id);
COMMENT ON TABLE tasker.yaml_step_handlers IS
    'The handler_class and handler_config of each YAML step template that has them.';

SELECT pg_catalog.pg_extension_config_dump('tasker.yaml_templates', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.yaml_step_handlers', '');

-- _yaml_type names a JSON value's type in YAML's words.
CREATE FUNCTION tasker._yaml_type(value jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE jsonb_typeof(value) WHEN 'object' THEN 'mapping' WHEN 'array' THEN 'sequence'
                ELSE coalesce(jsonb_typeof(value), 'null') END
$$;

-- _yaml_field reads one optional field of a YAML mapping and checks its
-- type, given as a JSON type (object, array, string, number, boolean).
CREATE FUNCTION tasker._yaml_field(obj jsonb, field text, expected text, what text)
    RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    value jsonb := obj -> field;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> expected THEN
        RAISE EXCEPTION 'field "%" of % must be a %, not a %', field, what,
                        CASE expected WHEN 'object' THEN 'mapping' WHEN 'array' THEN 'sequence'
                                      ELSE expected END,
                        tasker._yaml_type(value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;

-- _yaml_check_keys refuses a field the YAML format does not know (a typo
-- such as "depends_on_stpe" must not drop a dependency).
CREATE FUNCTION tasker._yaml_check_keys(obj jsonb, allowed text[], what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown text;
BEGIN
    SELECT k INTO unknown FROM jsonb_object_keys(obj) AS k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown field "%" in %', unknown, what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Known fields: %s.', array_to_string(allowed, ', '));
    END IF;
END $$;

-- _yaml_handler_queue is the queue of an external step named by a Ruby
-- handler class: each "::" segment in snake_case (ActiveSupport's
-- underscore), joined by "."; leading segments are dropped while the name
-- is longer than a queue may be (50).
--   OrderProcessing::StepHandler::ValidateOrder -> order_processing.step_handler.validate_order
CREATE FUNCTION tasker._yaml_handler_queue(handler_class text, step_name text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    segments text[];
    queue text;
BEGIN
    IF handler_class !~ '^(::)?[A-Z][A-Za-z0-9_]*(::[A-Z][A-Za-z0-9_]*)*$' THEN
        RAISE EXCEPTION 'handler_class "%" of step template "%" is not a Ruby class name', handler_class, step_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A handler class is a constant path such as "OrderProcessing::StepHandler::ValidateOrder".';
    END IF;
    segments := ARRAY(
        SELECT lower(regexp_replace(regexp_replace(seg, '([A-Z0-9]+)([A-Z][a-z])', '\1_\2', 'g'),
                                    '([a-z0-9])([A-Z])', '\1_\2', 'g'))
          FROM unnest(string_to_array(regexp_replace(handler_class, '^::', ''), '::'))
               WITH ORDINALITY AS u(seg, n)
         ORDER BY n);
    queue := array_to_string(segments, '.');
    WHILE length(queue) > 50 AND cardinality(segments) > 1 LOOP
        segments := segments[2:];
        queue := array_to_string(segments, '.');
    END LOOP;
    IF length(queue) > 50 THEN
        RAISE EXCEPTION 'handler_class "%" of step template "%" is too long to name a queue', handler_class, step_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Its last segment makes the %s-character queue name "%s"; a queue name has at most 50.', length(queue), queue),
                  HINT = 'Name the step''s queue with "queue:".';
    END IF;
    RETURN queue;
END $$;

-- _yaml_context_schema drops the JSON-schema annotations that never
-- reject a value (default, examples, $comment, deprecated, readOnly,
-- writeOnly), where tasker's schema checker looks: the schema, its
-- properties and items.  Validation keywords stay, so that one tasker
-- cannot enforce (minimum, pattern, ...) is refused by register_template.
CREATE FUNCTION tasker._yaml_context_schema(schema jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(schema) IS DISTINCT FROM 'object' THEN
        RETURN schema;
    END IF;
    schema := schema - ARRAY['default', 'examples', '$comment', 'deprecated', 'readOnly', 'writeOnly'];
    IF jsonb_typeof(schema -> 'properties') = 'object' THEN
        schema := jsonb_set(schema, '{properties}',
            (SELECT coalesce(jsonb_object_agg(p.key, tasker._yaml_context_schema(p.value)), '{}')
               FROM jsonb_each(schema -> 'properties') p));
    END IF;
    IF schema ? 'items' THEN
        schema := jsonb_set(schema, '{items}', tasker._yaml_context_schema(schema -> 'items'));
    END IF;
    RETURN schema;
END $$;

-- _yaml_template maps a parsed YAML task handler to
-- {"template": <register_template input>, "handlers": [{"step",
-- "handler_class", "handler_config", "derived_queue"}, ...]}.
CREATE FUNCTION tasker._yaml_template(doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    top_fields CONSTANT text[] := ARRAY['name', 'namespace_name', 'version', 'description',
        'task_handler_class', 'module_namespace', 'concurrent', 'default_dependent_system',
        'named_steps', 'schema', 'step_templates', 'handler_config', 'environments',
        'identity_strategy'];
    step_fields CONSTANT text[] := ARRAY['name', 'description', 'dependent_system',
        'default_retryable', 'default_retry_limit', 'skippable', 'handler_class', 'handler_config',
        'depends_on_step', 'depends_on_steps', 'depends_on', 'handler', 'queue', 'timeout',
        'retryable', 'max_attempts'];
    what CONSTANT text := 'the YAML template';
    field text;
    step jsonb;
    step_what text;
    step_name text;
    i integer := 0;
    names text[] := '{}';
    steps jsonb := '[]';
    handlers jsonb := '[]';
    handler_class text;
    derived text;
    derived_by jsonb := '{}';   -- derived queue -> handler class
    listed jsonb;
    missing text;
    template jsonb;
BEGIN
    IF doc IS NULL OR jsonb_typeof(doc) = 'null' THEN
        RAISE EXCEPTION 'YAML template is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write a mapping with name, namespace_name, version and step_templates.';
    END IF;
    IF jsonb_typeof(doc) <> 'object' THEN
        RAISE EXCEPTION 'YAML template must be a mapping, not a %', tasker._yaml_type(doc)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write a mapping with name, namespace_name, version and step_templates.';
    END IF;
    PERFORM tasker._yaml_check_keys(doc, top_fields, what);
    FOREACH field IN ARRAY ARRAY['name', 'namespace_name', 'version', 'description',
            'default_dependent_system', 'identity_strategy', 'task_handler_class',
            'module_namespace'] LOOP
        PERFORM tasker._yaml_field(doc, field, 'string', what);
    END LOOP;
    PERFORM tasker._yaml_field(doc, 'concurrent', 'boolean', what);
    PERFORM tasker._yaml_field(doc, 'schema', 'object', what);
    PERFORM tasker._yaml_field(doc, 'handler_config', 'object', what);
    PERFORM tasker._yaml_field(doc, 'environments', 'object', what);

    -- (before the loop, whose cost grows with the square of the steps)
    PERFORM tasker._check_count('tasker.max_template_steps',
        jsonb_array_length(coalesce(tasker._yaml_field(doc, 'step_templates', 'array', what), '[]')),
        format('template "%s.%s"', coalesce(doc ->> 'namespace_name', 'default'), doc ->> 'name'));
    FOR step IN SELECT value FROM jsonb_array_elements(
                    coalesce(tasker._yaml_field(doc, 'step_templates', 'array', what), '[]')) LOOP
        i := i + 1;
        IF jsonb_typeof(step) <> 'object' THEN
            RAISE EXCEPTION 'step_templates entry % must be a mapping, not a %', i, tasker._yaml_type(step)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        step_name := tasker._yaml_field(step, 'name', 'string', format('step_templates entry %s', i)) #>> '{}';
        IF step_name IS NULL THEN
            RAISE EXCEPTION 'step_templates entry % has no "name"', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        step_what := format('step template "%s"', step_name);
        PERFORM tasker._yaml_check_keys(step, step_fields, step_what);
        handler_class := tasker._yaml_field(step, 'handler_class', 'string', step_what) #>> '{}';
        PERFORM tasker._yaml_field(step, 'handler_config', 'object', step_what);

        -- handler_class names the queue of an external step, unless the
        -- step names a SQL handler or its queue
        derived := NULL;
        IF handler_class IS NOT NULL THEN
            derived := tasker._yaml_handler_queue(handler_class, step_name);
            IF nullif(step -> 'handler', 'null') IS NOT NULL
               OR nullif(step -> 'queue', 'null') IS NOT NULL THEN
                derived := NULL;
            ELSIF derived_by ->> derived <> handler_class THEN
                RAISE EXCEPTION 'handler classes "%" and "%" both map to queue "%"',
                                derived_by ->> derived, handler_class, derived
                    USING ERRCODE = 'duplicate_object',
                          HINT = format('Name the queue of step template "%s" with "queue:".', step_name);
            ELSE
                derived_by := derived_by || jsonb_build_object(derived, handler_class);
            END IF;
        END IF;

        steps := steps || jsonb_build_array(
            (step - 'handler_class' - 'handler_config')
            || CASE WHEN derived IS NULL THEN '{}' ELSE jsonb_build_object('queue', derived) END);
        IF handler_class IS NOT NULL OR jsonb_typeof(step -> 'handler_config') = 'object' THEN
            handlers := handlers || jsonb_build_array(jsonb_build_object(
                'step', step_name, 'handler_class', handler_class,
                'handler_config', nullif(step -> 'handler_config', 'null'),
                'derived_queue', derived));
        END IF;
        names := names || step_name;
    END LOOP;

    -- named_steps, when given, lists exactly the step templates
    listed := tasker._yaml_field(doc, 'named_steps', 'array', what);
    IF listed IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(listed) e WHERE jsonb_typeof(e) <> 'string') THEN
            RAISE EXCEPTION 'named_steps must list step names as strings'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT n INTO missing FROM jsonb_array_elements_text(listed) WITH ORDINALITY AS l(n, o)
         WHERE n <> ALL (names) ORDER BY o LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'named_steps lists "%", but no step template defines it', missing
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT n INTO missing FROM unnest(names) WITH ORDINALITY AS u(n, o)
         WHERE NOT listed ? n ORDER BY o LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'step template "%" is missing from named_steps', missing
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    SELECT jsonb_object_agg(f.key, f.value) INTO template
      FROM jsonb_each(jsonb_build_object(
               'namespace', doc -> 'namespace_name',
               'name', doc -> 'name',
               'version', doc -> 'version',
               'description', doc -> 'description',
               'identity_strategy', doc -> 'identity_strategy',
               'context_schema', tasker._yaml_context_schema(doc -> 'schema'),
               'default_dependent_system', doc -> 'default_dependent_system',
               'steps', steps)) f
     WHERE jsonb_typeof(f.value) IS DISTINCT FROM 'null';
    RETURN jsonb_build_object('template', template, 'handlers', handlers);
END $$;

CREATE FUNCTION tasker.yaml_template(yaml text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tasker._yaml_template(tasker.yaml_to_jsonb(yaml)) -> 'template'
$$;
COMMENT ON FUNCTION tasker.yaml_template(text) IS
    'The register_template JSON a Rails-style YAML task handler maps to (nothing is registered).';

CREATE FUNCTION tasker.register_template_yaml(yaml text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb := tasker.yaml_to_jsonb(yaml);
    mapped jsonb := tasker._yaml_template(doc);
    handler record;
    other record;
    new_id bigint;
    stored jsonb;
BEGIN
    PERFORM tasker._authorize('submitter',
        coalesce(mapped #>> '{template,namespace}', 'default'), 'namespace');
    -- a derived queue must not already serve another handler class
    FOR handler IN SELECT h.step, h.handler_class, h.derived_queue
                     FROM jsonb_to_recordset(mapped -> 'handlers')
                          AS h(step text, handler_class text, derived_queue text)
                    WHERE h.derived_queue IS NOT NULL LOOP
        SELECT y.handler_class, n.name AS namespace, t.name, t.version INTO other
          FROM tasker.named_steps s
          JOIN tasker.yaml_step_handlers y ON y.named_step_id = s.named_step_id
          JOIN tasker.named_tasks t ON t.named_task_id = s.named_task_id
          JOIN tasker.namespaces n ON n.namespace_id = t.namespace_id
         WHERE s.queue = handler.derived_queue AND s.handler IS NULL
           AND y.handler_class <> handler.handler_class
         ORDER BY s.named_step_id LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'handler_class "%" of step template "%" maps to queue "%", which already serves handler_class "%"',
                            handler.handler_class, handler.step, handler.derived_queue, other.handler_class
                USING ERRCODE = 'duplicate_object',
                      DETAIL = format('Template %s.%s %s has a step of that class on that queue.',
                                      other.namespace, other.name, other.version),
                      HINT = format('Name the queue of step template "%s" with "queue:".', handler.step);
        END IF;
    END LOOP;

    new_id := tasker.register_template(mapped -> 'template');

    -- the same version again: the same document returns the id
    SELECT y.document INTO stored FROM tasker.yaml_templates y WHERE y.named_task_id = new_id;
    IF FOUND THEN
        IF stored = doc THEN
            RETURN new_id;
        END IF;
        RAISE EXCEPTION 'template %.% version % is already registered with a different YAML document',
            mapped #>> '{template,namespace}', mapped #>> '{template,name}', mapped #>> '{template,version}'
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'The template is the same, but handler_class, handler_config or another kept field differs.',
                  HINT = 'Registered versions are immutable: register the change as a new version.';
    END IF;

    INSERT INTO tasker.yaml_templates (named_task_id, task_handler_class, handler_config, document, source)
    VALUES (new_id, doc ->> 'task_handler_class', nullif(doc -> 'handler_config', 'null'), doc, yaml);
    INSERT INTO tasker.yaml_step_handlers (named_step_id, named_task_id, handler_class, handler_config)
    SELECT s.named_step_id, new_id, h.handler_class, h.handler_config
      FROM jsonb_to_recordset(mapped -> 'handlers') AS h(step text, handler_class text, handler_config jsonb)
      JOIN tasker.named_steps s ON s.named_task_id = new_id AND s.name = h.step;
    RETURN new_id;
END $$;
COMMENT ON FUNCTION tasker.register_template_yaml(text) IS
    'Registers a task template written in the Rails engine''s YAML task-handler format (see doc/yaml.md); the same document again returns the same id.';

CREATE FUNCTION tasker.step_handler(step_id bigint, OUT handler_class text, OUT handler_config jsonb)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tasker._authorize_steps(ARRAY[step_handler.step_id]);
    SELECT y.handler_class, y.handler_config
      FROM tasker.workflow_steps s
      JOIN tasker.yaml_step_handlers y ON y.named_step_id = s.named_step_id
     WHERE s.workflow_step_id = step_handler.step_id
$$;
COMMENT ON FUNCTION tasker.step_handler(bigint) IS
    'The handler_class and handler_config a step''s YAML template gave it (NULLs when none), for the external worker that claimed it.';
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
--------------------------------------------------------------------------
-- 82_archive.sql: retention — finished tasks deleted in small batches.
--
-- archive_tasks deletes ONE batch and returns how many tasks it deleted;
-- call it in a loop, one transaction per call, until it returns 0 (a
-- function cannot commit between batches, and a procedure that could would
-- run without the pinned search_path and SECURITY DEFINER of the API).
-- Each batch locks only the task rows it deletes, taken with SKIP LOCKED
-- (a task someone holds is left for the next call), and their steps, edges,
-- transitions and annotations, which go with them (ON DELETE CASCADE).  The
-- maintained state counters follow: the row triggers count every deleted
-- task and step.
--------------------------------------------------------------------------

-- Finished tasks by the time they finished: the batches read this index
-- (tasks that are still running are not in it).
CREATE INDEX tasks_finished_idx ON tasker.tasks (completed_at)
    WHERE current_state IN ('complete', 'cancelled', 'resolved_manually', 'error');

CREATE FUNCTION tasker.archive_tasks(older_than interval, batch_size integer DEFAULT 1000,
                                     include_errors boolean DEFAULT false,
                                     namespace text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    namespace_tasks integer[];
    deleted bigint;
BEGIN
    PERFORM tasker._authorize('admin', '', NULL);
    PERFORM tasker._require(older_than, 'older_than');
    PERFORM tasker._require(batch_size, 'batch_size');
    PERFORM tasker._require(include_errors, 'include_errors');
    IF older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative, not %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call archive_tasks again for the next batch.';
    END IF;
    IF archive_tasks.namespace IS NOT NULL THEN
        SELECT array_agg(nt.named_task_id) INTO namespace_tasks
          FROM tasker.namespaces n JOIN tasker.named_tasks nt USING (namespace_id)
         WHERE n.name = archive_tasks.namespace;
        IF NOT FOUND OR namespace_tasks IS NULL THEN
            PERFORM 1 FROM tasker.namespaces n WHERE n.name = archive_tasks.namespace;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'namespace "%" does not exist', archive_tasks.namespace
                    USING ERRCODE = 'undefined_object';
            END IF;
            RETURN 0;
        END IF;
    END IF;
    cutoff := statement_timestamp() - older_than;

    WITH victims AS (
        SELECT t.task_id
          FROM tasker.tasks t
         WHERE t.current_state IN ('complete', 'cancelled', 'resolved_manually', 'error')
           AND (archive_tasks.include_errors OR t.current_state <> 'error')
           AND t.completed_at < cutoff
           AND (namespace_tasks IS NULL OR t.named_task_id = ANY (namespace_tasks))
         ORDER BY t.completed_at
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED
    )
    DELETE FROM tasker.tasks t USING victims v WHERE t.task_id = v.task_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END $$;
COMMENT ON FUNCTION tasker.archive_tasks(interval, integer, boolean, text) IS
    'Deletes one batch of tasks that finished (complete, cancelled, resolved_manually; error too when include_errors) more than older_than ago, with their steps and history; returns how many. Call it again, one transaction per call, until it returns 0.';
--------------------------------------------------------------------------
-- 85_security.sql: the API runs as the extension's owner, and the grant
-- helpers give roles the use of it (doc/security.md).
--------------------------------------------------------------------------

-- Every API function (every function whose name does not start with "_")
-- becomes SECURITY DEFINER with a pinned search_path, except the few that
-- read no table: a role needs EXECUTE on the function only, never a
-- privilege on a table, and the function authorizes tasker._caller().
-- EXECUTE stays revoked from PUBLIC (90_grants.sql).
CREATE FUNCTION tasker._invoker_functions() RETURNS text[]
    LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['transition_allowed', 'state_machine', 'backoff_seconds', 'yaml_to_jsonb',
                 'concurrency_formula', 'fail_permanently', 'retry_after', 'context_violation']
$$;
COMMENT ON FUNCTION tasker._invoker_functions() IS
    'The API functions that stay SECURITY INVOKER: they read no table and call no internal function.';

DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = 'tasker'::regnamespace AND p.prokind = 'f'
                 AND p.proname !~ '^_' AND p.proname <> ALL (tasker._invoker_functions())
               ORDER BY p.oid LOOP
        -- (fn is a regprocedure: its text is the quoted, qualified signature)
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', fn);
    END LOOP;
END $$;

-- What each kind of role may execute, by function name (all overloads).
-- An administrator may execute every API function, and reads every table
-- and view (tasker.workers needs _worker_list).
CREATE FUNCTION tasker._granted_functions(kind text) RETURNS text[]
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

-- _sync_privileges makes a role's privileges on tasker's objects match its
-- grants: USAGE on the schema while it has any, EXECUTE on the functions
-- of its kinds (and on no other API function), SELECT on every table and
-- view while it is an administrator.
CREATE FUNCTION tasker._sync_privileges(p_role regrole) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kinds text[];
    role_name name;
    fn record;
    wanted boolean;
BEGIN
    SELECT r.rolname INTO role_name FROM pg_roles r WHERE r.oid = p_role;
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'role % does not exist', p_role::oid USING ERRCODE = 'undefined_object';
    END IF;
    kinds := ARRAY(SELECT DISTINCT g.kind FROM tasker.grants g WHERE g.role = p_role ORDER BY 1);

    -- (every name below is a regprocedure's or quoted by %I: nothing a
    -- caller wrote is spliced into the statements)
    FOR fn IN SELECT p.oid::regprocedure AS signature, p.proname
                FROM pg_proc p
               WHERE p.pronamespace = 'tasker'::regnamespace AND p.prokind = 'f'
                 AND (p.proname !~ '^_' OR p.proname = '_worker_list')
               ORDER BY p.oid LOOP
        wanted := 'admin' = ANY (kinds)
               OR ('submitter' = ANY (kinds) AND fn.proname = ANY (tasker._granted_functions('submitter')))
               OR ('worker' = ANY (kinds) AND fn.proname = ANY (tasker._granted_functions('worker')));
        IF wanted THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn.signature, role_name);
        ELSE
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', fn.signature, role_name);
        END IF;
    END LOOP;
    IF 'admin' = ANY (kinds) THEN
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA tasker TO %I', role_name);
    ELSE
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA tasker FROM %I', role_name);
    END IF;
    IF cardinality(kinds) > 0 THEN
        EXECUTE format('GRANT USAGE ON SCHEMA tasker TO %I', role_name);
    ELSE
        EXECUTE format('REVOKE USAGE ON SCHEMA tasker FROM %I', role_name);
    END IF;
END $$;

-- _change_grant adds (or removes) one grant row and syncs the role's
-- privileges; true when something changed.
CREATE FUNCTION tasker._change_grant(p_role regrole, p_kind text, p_scope text, p_add boolean)
    RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    changed boolean;
BEGIN
    PERFORM tasker._authorize('admin', '', NULL);
    PERFORM tasker._require(p_role, 'role');
    IF p_kind <> 'admin' THEN
        PERFORM tasker._require(p_scope, CASE p_kind WHEN 'submitter' THEN 'namespace' ELSE 'queue' END);
        IF p_scope <> '*' THEN
            PERFORM tasker._check_name(p_scope, CASE p_kind WHEN 'submitter' THEN 'namespace' ELSE 'queue' END, 50);
        END IF;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = p_role) THEN
        RAISE EXCEPTION 'role % does not exist', p_role::oid USING ERRCODE = 'undefined_object';
    END IF;
    IF p_add AND tasker._role_is_superuser(p_role) THEN
        RAISE EXCEPTION 'role % is a superuser', p_role
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A superuser may do everything already; tasker grants are for other roles.';
    END IF;
    IF p_add THEN
        INSERT INTO tasker.grants (role, kind, scope, granted_by)
        VALUES (p_role, p_kind, p_scope, tasker._caller())
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM tasker.grants g WHERE g.role = p_role AND g.kind = p_kind AND g.scope = p_scope;
    END IF;
    changed := FOUND;
    IF NOT tasker._role_is_superuser(p_role) THEN
        PERFORM tasker._sync_privileges(p_role);
    END IF;
    RETURN changed;
END $$;

CREATE FUNCTION tasker.grant_admin(role regrole) RETURNS boolean
    LANGUAGE sql AS $$ SELECT tasker._change_grant(role, 'admin', '', true) $$;
COMMENT ON FUNCTION tasker.grant_admin(regrole) IS
    'Makes a role a tasker administrator: every API function on every namespace, queue and task, and SELECT on every table and view; true when new.';

CREATE FUNCTION tasker.revoke_admin(role regrole) RETURNS boolean
    LANGUAGE sql AS $$ SELECT tasker._change_grant(role, 'admin', '', false) $$;
COMMENT ON FUNCTION tasker.revoke_admin(regrole) IS
    'Takes a role''s administrator grant away (its other grants stay); true when it had one.';

CREATE FUNCTION tasker.grant_submitter(role regrole, namespace text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT tasker._change_grant(role, 'submitter', namespace, true) $$;
COMMENT ON FUNCTION tasker.grant_submitter(regrole, text) IS
    'Lets a role register templates in a namespace (''*'': every namespace), create its tasks, read and cancel them; SQL handlers of its templates run as the role; true when new.';

CREATE FUNCTION tasker.revoke_submitter(role regrole, namespace text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT tasker._change_grant(role, 'submitter', namespace, false) $$;
COMMENT ON FUNCTION tasker.revoke_submitter(regrole, text) IS
    'Takes a role''s submitter grant on a namespace away; true when it had one.';

CREATE FUNCTION tasker.grant_worker(role regrole, queue text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT tasker._change_grant(role, 'worker', queue, true) $$;
COMMENT ON FUNCTION tasker.grant_worker(regrole, text) IS
    'Lets a role claim the external steps of a queue (''*'': every queue) and complete, fail and extend the lease of what it claimed; true when new.';

CREATE FUNCTION tasker.revoke_worker(role regrole, queue text) RETURNS boolean
    LANGUAGE sql AS $$ SELECT tasker._change_grant(role, 'worker', queue, false) $$;
COMMENT ON FUNCTION tasker.revoke_worker(regrole, text) IS
    'Takes a role''s worker grant on a queue away; true when it had one.';

-- The helpers above are API functions too.
ALTER FUNCTION tasker.grant_admin(regrole) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker.revoke_admin(regrole) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker.grant_submitter(regrole, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker.revoke_submitter(regrole, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker.grant_worker(regrole, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker.revoke_worker(regrole, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
--------------------------------------------------------------------------
-- 90_grants.sql: nothing is granted to PUBLIC; see README "Roles".
--------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA tasker FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA tasker FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tasker FROM PUBLIC;

-- This database gets its dispatcher as soon as the install commits.
SELECT tasker._wake_launcher();
