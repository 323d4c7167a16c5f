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
