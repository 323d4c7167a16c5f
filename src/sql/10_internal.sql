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
