-- tasker 0.3.0 -> 0.4.0.  Every change made to src/sql since 0.3.0 is
-- repeated here; test/t/060_upgrade.pl fails when the result differs from a
-- fresh install of 0.4.0.
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.4.0'" to load this file. \quit

-- _finalize_tasks was planned again on every call (its array argument made
-- every custom plan look cheaper than the generic one).
ALTER FUNCTION tasker._finalize_tasks(bigint[]) SET plan_cache_mode = force_generic_plan;

-- The dispatcher's timer scans order by an expression the primary key
-- cannot supply: a plan made while the table was empty walked all of it.
CREATE OR REPLACE FUNCTION tasker.reap_expired_leases() RETURNS integer
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

CREATE OR REPLACE FUNCTION tasker._recover_sql_steps(live_executors text[], listed_at timestamptz)
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
