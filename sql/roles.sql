-- Roles: an administrator, a submitter and a worker, each made with the
-- grant helpers (doc/security.md).  The API functions run as the
-- extension's owner; a role needs EXECUTE on them (granted by the helpers,
-- never to PUBLIC) and each checks the caller's namespace or queue.
SET client_min_messages = warning;
\set VERBOSITY terse
CREATE ROLE regress_roles_admin;
CREATE ROLE regress_roles_submitter;
CREATE ROLE regress_roles_worker;
CREATE ROLE regress_roles_nobody;
CREATE ROLE regress_roles_crew;                               -- a group of workers
CREATE ROLE regress_roles_member IN ROLE regress_roles_crew;  -- one of them

-- A template in a namespace no test role submits to, with one task.
SELECT tasker.register_template('{"namespace": "roles_other", "name": "job",
  "steps": [{"name": "x", "queue": "roles_other_q"}]}') > 0 AS registered;
SELECT tasker.create_task('roles_other', 'job') AS other_task \gset

-- Before any grant a role can do nothing: no EXECUTE, no table privilege.
SET ROLE regress_roles_submitter;
SELECT tasker.create_task('roles_ns', 'flow');
SELECT count(*) FROM tasker.tasks;
RESET ROLE;

--------------------------------------------------------------------------
-- The grants.
--------------------------------------------------------------------------
SELECT tasker.grant_admin('regress_roles_admin') AS admin,
       tasker.grant_submitter('regress_roles_submitter', 'roles_ns') AS submitter,
       tasker.grant_worker('regress_roles_worker', 'roles_q') AS worker,
       tasker.grant_worker('regress_roles_crew', 'roles_q2') AS crew;
-- Granting again changes nothing.
SELECT tasker.grant_submitter('regress_roles_submitter', 'roles_ns') AS granted_again;
SELECT role, kind, scope, granted_by = current_user::regrole AS granted_by_me
  FROM tasker.grants WHERE role::text LIKE 'regress_roles%' ORDER BY role::text, kind, scope;

-- Bad grants, each refused with its SQLSTATE.
\set VERBOSITY sqlstate
SELECT tasker.grant_worker('regress_roles_worker', 'no spaces');
SELECT tasker.grant_worker('regress_roles_worker', NULL);
SELECT tasker.grant_worker(NULL, 'roles_q');
SELECT tasker.grant_submitter('regress_roles_no_such_role', 'roles_ns');
SELECT tasker.grant_admin(current_user::regrole);
\set VERBOSITY terse
SELECT tasker.grant_admin(current_user::regrole);

-- What each role may execute now; the administrator: every API function,
-- and of the internal ones only what tasker.workers needs.
SELECT r.rolname, string_agg(p.proname, ', ' ORDER BY p.proname) AS may_execute
  FROM pg_roles r
  JOIN pg_proc p ON p.pronamespace = 'tasker'::regnamespace
                AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
 WHERE r.rolname LIKE 'regress_roles%' AND r.rolname <> 'regress_roles_admin'
 GROUP BY r.rolname ORDER BY r.rolname;
SELECT count(*) AS admin_cannot_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'tasker'::regnamespace AND p.proname !~ '^_'
   AND NOT has_function_privilege('regress_roles_admin', p.oid, 'EXECUTE');
SELECT count(*) AS internal_functions_granted
  FROM pg_proc p, pg_roles r
 WHERE p.pronamespace = 'tasker'::regnamespace AND p.proname ~ '^_' AND p.proname <> '_worker_list'
   AND r.rolname LIKE 'regress_roles%' AND has_function_privilege(r.oid, p.oid, 'EXECUTE');

--------------------------------------------------------------------------
-- The submitter: registers templates in its namespace, creates tasks of
-- them, reads and cancels them; nothing elsewhere, no table, no step.
--------------------------------------------------------------------------
SET ROLE regress_roles_submitter;
SELECT tasker.register_template('{"namespace": "roles_ns", "name": "flow",
  "steps": [{"name": "a", "queue": "roles_q"},
            {"name": "b", "queue": "roles_q2", "depends_on": "a"}]}') > 0 AS registered;
SELECT tasker.register_template('{"namespace": "roles_other", "name": "mine",
  "steps": [{"name": "a"}]}');
SELECT tasker.register_template_yaml($$
namespace_name: roles_other
name: mine_too
step_templates:
  - name: a
$$);
SELECT tasker.create_task('roles_ns', 'flow', context => '{"n": 1}') AS task \gset
SELECT tasker.create_task('roles_other', 'job');
SELECT tasker.find_template('roles_ns', 'flow') > 0 AS found;
SELECT tasker.find_template('roles_other', 'job');
-- Its own task, through every reading function.
SELECT name, current_state FROM tasker.task_steps(:task) ORDER BY name;
SELECT count(*) AS transitions FROM tasker.task_history(:task);
SELECT count(*) AS step_transitions FROM tasker.step_transitions(:task);
SELECT tasker.explain_task(:task) LIKE 'task % (roles_ns.flow 0.1.0) is pending%' AS explained;
SELECT tasker.task_graph(:task) LIKE 'graph TD%' AS graph;
SELECT execution_status FROM tasker.task_execution_context(:task);
SELECT count(*) FROM tasker.task_execution_contexts(ARRAY[:task]::bigint[]);
SELECT count(*) AS levels FROM tasker.dependency_levels(:task);
SELECT tasker.template_graph('roles_ns', 'flow') LIKE 'graph TD%' AS template_graph;
SELECT count(*) AS template_levels FROM tasker.template_dependency_levels('roles_ns', 'flow');
-- Another namespace's task, through the same functions: refused.
SELECT * FROM tasker.task_steps(:other_task);
SELECT * FROM tasker.task_history(:other_task);
SELECT * FROM tasker.step_transitions(:other_task);
SELECT tasker.explain_task(:other_task);
SELECT tasker.task_graph(:other_task);
SELECT * FROM tasker.task_execution_context(:other_task);
SELECT * FROM tasker.task_execution_contexts(ARRAY[:task, :other_task]::bigint[]);
SELECT * FROM tasker.dependency_levels(:other_task);
SELECT tasker.template_graph('roles_other', 'job');
SELECT * FROM tasker.template_dependency_levels('roles_other', 'job');
SELECT tasker.cancel_task(:other_task);
-- A task that does not exist is one, whoever asks.
SELECT * FROM tasker.task_steps(-1);
-- Not a worker, not an administrator, no table.
SELECT * FROM tasker.claim_steps('roles_q', 'sneaky');
SELECT tasker.resolve_step(1);
SELECT tasker.grant_submitter('regress_roles_submitter', 'roles_other');
SELECT count(*) FROM tasker.tasks;
SELECT count(*) FROM tasker.templates;
RESET ROLE;
-- Its template's SQL handlers would run as the submitter.
SELECT owner_role FROM tasker.templates WHERE namespace = 'roles_ns';

--------------------------------------------------------------------------
-- The worker: claims, completes, fails and extends leases on its queues;
-- nothing else.
--------------------------------------------------------------------------
SET ROLE regress_roles_worker;
SELECT step_name, attempt FROM tasker.claim_steps('roles_q', 'w1');
RESET ROLE;
SELECT workflow_step_id AS step_a FROM tasker.workflow_steps WHERE task_id = :task AND name = 'a' \gset
SELECT workflow_step_id AS step_b FROM tasker.workflow_steps WHERE task_id = :task AND name = 'b' \gset
SET ROLE regress_roles_worker;
SELECT tasker.extend_lease(:step_a, 1, '1 minute') IS NOT NULL AS extended;
SELECT tasker.complete_step(:step_a, 1, '{"ok": true}') AS completed;
SELECT * FROM tasker.claim_steps('roles_q2', 'w1');
SELECT * FROM tasker.claim_steps('roles_other_q', 'w1');
SELECT tasker.create_task('roles_ns', 'flow');
SELECT * FROM tasker.task_steps(:task);
SELECT tasker.cancel_task(:task);
SELECT count(*) FROM tasker.workflow_steps;
RESET ROLE;

-- A member of a granted role has its grants: the crew works roles_q2.
SET ROLE regress_roles_member;
SELECT step_name, attempt FROM tasker.claim_steps('roles_q2', 'm1');
SELECT tasker.extend_lease(:step_b, 1, '1 minute') IS NOT NULL AS extended;
RESET ROLE;
-- ... which the worker may not report on, even with the right attempt.
SET ROLE regress_roles_worker;
SELECT tasker.complete_step(:step_b, 1);
SELECT tasker.fail_step(:step_b, 1);
SELECT tasker.extend_lease(:step_b, 1, '1 minute');
SELECT tasker.complete_steps(ARRAY[:step_b]::bigint[], '{1}');
SELECT * FROM tasker.step_handler(:step_b);
RESET ROLE;
SET ROLE regress_roles_member;
SELECT tasker.fail_step(:step_b, 1, '{"message": "try again"}', backoff_seconds => 0) AS failed;
SELECT step_name, attempt FROM tasker.claim_steps('roles_q2', 'm1');
SELECT tasker.complete_steps(ARRAY[:step_b]::bigint[], '{2}') AS completed;
RESET ROLE;
SELECT current_state FROM tasker.tasks WHERE task_id = :task;

-- A step run by a SQL handler is reported by tasker's executors: a worker
-- of its queue may not complete or fail it.
CREATE SCHEMA roles_h;
CREATE FUNCTION roles_h.wait(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker.register_template('{"namespace": "roles_other", "name": "in_db",
  "steps": [{"name": "x", "handler": "roles_h.wait", "queue": "roles_q"}]}') > 0 AS registered;
SELECT tasker.create_task('roles_other', 'in_db') AS in_db_task \gset
SELECT workflow_step_id AS sql_step FROM tasker.workflow_steps WHERE task_id = :in_db_task \gset
SET ROLE regress_roles_worker;
\set VERBOSITY sqlstate
SELECT tasker.complete_step(:sql_step, 1);
\set VERBOSITY terse
RESET ROLE;

--------------------------------------------------------------------------
-- The administrator: every function on every namespace, queue and task;
-- it reads every table and view, and writes through the API only.
--------------------------------------------------------------------------
SET ROLE regress_roles_admin;
SELECT count(*) > 0 AS reads_tasks FROM tasker.tasks;
SELECT count(*) >= 0 AS reads_views FROM tasker.failed_steps, tasker.queue_depths;
SELECT count(*) > 0 AS reads_workers FROM tasker.workers;
SELECT count(*) > 0 AS reads_other_namespaces FROM tasker.task_steps(:other_task);
SELECT step_name FROM tasker.claim_steps('roles_other_q', 'admin');
SELECT tasker.cancel_task(:other_task) AS cancelled;
SELECT tasker.register_template('{"namespace": "roles_admin_ns", "name": "any",
  "steps": [{"name": "a"}]}') > 0 AS registered_anywhere;
SELECT tasker.grant_worker('regress_roles_nobody', '*') AS granted_by_admin;
SELECT tasker.reap_expired_leases() >= 0 AS reaped;
UPDATE tasker.tasks SET priority = 1 WHERE task_id = :task;
RESET ROLE;

-- '*' is every queue (or, for a submitter, every namespace).
SET ROLE regress_roles_nobody;
SELECT count(*) AS claimed_anywhere FROM tasker.claim_steps('roles_any_queue', 'n1');
RESET ROLE;
SELECT role, kind, scope, granted_by FROM tasker.grants
 WHERE role = 'regress_roles_nobody'::regrole;

--------------------------------------------------------------------------
-- Revoking.
--------------------------------------------------------------------------
-- A role that is a submitter and a worker keeps one when the other goes.
SELECT tasker.grant_worker('regress_roles_submitter', 'roles_q') AS also_worker;
SELECT tasker.revoke_worker('regress_roles_submitter', 'roles_q') AS revoked;
SELECT has_function_privilege('regress_roles_submitter', 'tasker.create_task(text,text,text,jsonb,text,text,text,text[],text[],integer,text)', 'EXECUTE') AS may_create,
       has_function_privilege('regress_roles_submitter', 'tasker.claim_steps(text,text,integer,interval)', 'EXECUTE') AS may_claim;
SELECT tasker.revoke_worker('regress_roles_submitter', 'roles_q') AS revoked_again;
-- A worker whose last grant goes may do nothing again.
SELECT tasker.revoke_worker('regress_roles_worker', 'roles_q') AS revoked;
SET ROLE regress_roles_worker;
SELECT * FROM tasker.claim_steps('roles_q', 'w1');
RESET ROLE;
SELECT has_schema_privilege('regress_roles_worker', 'tasker', 'USAGE') AS schema_usage;
-- An administrator no longer one reads no table.
SELECT tasker.revoke_admin('regress_roles_admin') AS revoked;
SET ROLE regress_roles_admin;
SELECT count(*) FROM tasker.tasks;
RESET ROLE;
-- Only an administrator changes grants.
SET ROLE regress_roles_submitter;
SELECT tasker.revoke_submitter('regress_roles_submitter', 'roles_ns');
RESET ROLE;

-- Clean up: revoke every grant (the role then holds no privilege on
-- tasker's objects) and drop the roles.
SELECT count(*) FILTER (WHERE CASE kind
           WHEN 'admin' THEN tasker.revoke_admin(role)
           WHEN 'submitter' THEN tasker.revoke_submitter(role, scope)
           ELSE tasker.revoke_worker(role, scope) END) AS revoked
  FROM tasker.grants WHERE role::text LIKE 'regress_roles%';
DROP SCHEMA roles_h CASCADE;
DROP ROLE regress_roles_admin, regress_roles_submitter, regress_roles_worker,
          regress_roles_nobody, regress_roles_member, regress_roles_crew;
