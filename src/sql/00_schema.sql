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
