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
