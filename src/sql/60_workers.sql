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
