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
