-- Security: SQL handlers never get more rights than the role that
-- registered them; the API's SECURITY DEFINER functions never call a
-- look-alike planted in the caller's search_path; no argument is ever
-- spliced into SQL text.  (doc/security.md)
SET client_min_messages = warning;
\set VERBOSITY terse
CREATE ROLE regress_sec_owner;        -- registers templates in sec_ns, owns its handlers
CREATE ROLE regress_sec_reader;       -- may read the secret
CREATE ROLE regress_sec_worker;       -- works queue sec_q
SELECT tasker.grant_submitter('regress_sec_owner', 'sec_ns'),
       tasker.grant_worker('regress_sec_worker', 'sec_q');

CREATE SCHEMA sec;
CREATE TABLE sec.secret (v text);
INSERT INTO sec.secret VALUES ('the recipe');
GRANT SELECT ON sec.secret TO regress_sec_reader;
CREATE SCHEMA sec_own AUTHORIZATION regress_sec_owner;
GRANT USAGE ON SCHEMA sec TO regress_sec_owner;

-- wait_for polls (bounded: 60 s) until a task is finished; returns its
-- steps' states and errors (oids masked: they differ from run to run).
CREATE FUNCTION sec.wait_for(t bigint)
    RETURNS TABLE (step text, state text, sqlstate text, message text) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT current_state IN ('complete', 'error', 'cancelled')
                     FROM tasker.tasks WHERE task_id = t);
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN QUERY SELECT s.name, s.current_state, s.error ->> 'sqlstate',
                        regexp_replace(s.error ->> 'message', '[0-9]{4,}', 'N')
                   FROM tasker.workflow_steps s WHERE s.task_id = t ORDER BY s.workflow_step_id;
END $$;

--------------------------------------------------------------------------
-- SQL handlers run as the registering role, with its rights only.
--------------------------------------------------------------------------
SET ROLE regress_sec_owner;
-- Reads a table the role has no grant on.
CREATE FUNCTION sec_own.peek(input jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('secret', (SELECT v FROM sec.secret)) $$;
-- Tries to become someone else, three ways.
CREATE FUNCTION sec_own.set_role(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    SET ROLE regress_sec_reader;
    RETURN '{}';
END $$;
CREATE FUNCTION sec_own.set_config_role(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', 'regress_sec_reader', false);
    RETURN '{}';
END $$;
CREATE FUNCTION sec_own.session_authorization(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    SET SESSION AUTHORIZATION regress_sec_reader;
    RETURN '{}';
END $$;
-- Uses the tasker API from inside the executor: as regress_sec_owner, not
-- as the executor's superuser session.
CREATE FUNCTION sec_own.submit_elsewhere(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker.create_task('sec_other', 'job');
    RETURN '{}';
END $$;
CREATE FUNCTION sec_own.make_me_admin(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker.grant_admin('regress_sec_owner');
    RETURN '{}';
END $$;
CREATE FUNCTION sec_own.submit_here(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jsonb_build_object('created', tasker.create_task('sec_ns', 'child') > 0);
END $$;
-- Poisons the executor session's search_path with a plain SET (it would
-- outlive the transaction), where it plants a look-alike of the function
-- the executor uses to record errors; then the next step fails.
CREATE TABLE sec_own.calls (fn text, called_as text);
CREATE FUNCTION sec_own.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sec_own.calls VALUES ('jsonb_build_object', current_user);
    RETURN '{}';
END $$;
CREATE FUNCTION sec_own.jsonb_strip_nulls(jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sec_own.calls VALUES ('jsonb_strip_nulls', current_user);
    RETURN '{}';
END $$;
CREATE FUNCTION sec_own.poison(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('search_path', 'sec_own, pg_catalog', false);
    RETURN '{"poisoned": true}';
END $$;
CREATE FUNCTION sec_own.after_poison(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'failing on a search_path of %', current_setting('search_path');
END $$;

SELECT tasker.register_template('{"namespace": "sec_ns", "name": "child", "steps": [{"name": "x"}]}') > 0;
SELECT tasker.register_template('{"namespace": "sec_ns", "name": "escalate", "steps": [
    {"name": "peek",                  "handler": "sec_own.peek",                  "max_attempts": 1},
    {"name": "set_role",              "handler": "sec_own.set_role",              "max_attempts": 1},
    {"name": "set_config_role",       "handler": "sec_own.set_config_role",       "max_attempts": 1},
    {"name": "session_authorization", "handler": "sec_own.session_authorization", "max_attempts": 1},
    {"name": "submit_elsewhere",      "handler": "sec_own.submit_elsewhere",      "max_attempts": 1},
    {"name": "make_me_admin",         "handler": "sec_own.make_me_admin",         "max_attempts": 1},
    {"name": "submit_here",           "handler": "sec_own.submit_here",           "max_attempts": 1},
    {"name": "poison",                "handler": "sec_own.poison",                "max_attempts": 1},
    {"name": "after_poison",          "handler": "sec_own.after_poison",          "max_attempts": 1,
     "depends_on": ["poison"]}]}') > 0 AS registered;
SELECT tasker.create_task('sec_ns', 'escalate') AS task \gset
RESET ROLE;
SELECT tasker.register_template('{"namespace": "sec_other", "name": "job", "steps": [{"name": "x"}]}') > 0;

-- Every attempt to get more than regress_sec_owner has fails, with the
-- error recorded on the step (42501: insufficient privilege); what it may
-- do (create a task in its own namespace) works.
SELECT * FROM sec.wait_for(:task);
-- The planted look-alikes were never called: the executor qualifies its
-- own SQL and undoes a handler's settings when the handler returns.
SELECT * FROM sec_own.calls;
-- No task was created where the role may not submit.
SELECT count(*) AS tasks_in_sec_other FROM tasker.active_tasks WHERE namespace = 'sec_other';

--------------------------------------------------------------------------
-- A handler is checked before each run: its current definition runs with
-- the owner's rights; an owner change, a revoked EXECUTE or a dropped
-- function fails the run cleanly.
--------------------------------------------------------------------------
SET ROLE regress_sec_owner;
CREATE FUNCTION sec_own.shifty(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"v": 1}'::jsonb $$;
CREATE FUNCTION sec_own.definer(input jsonb) RETURNS jsonb LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog AS $$ SELECT jsonb_build_object('secret', (SELECT v FROM sec.secret)) $$;
CREATE FUNCTION sec_own.doomed(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
RESET ROLE;
CREATE FUNCTION sec.shared(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"shared": true}'::jsonb $$;
REVOKE EXECUTE ON FUNCTION sec.shared(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sec.shared(jsonb) TO regress_sec_owner;
CREATE FUNCTION sec.private(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
REVOKE EXECUTE ON FUNCTION sec.private(jsonb) FROM PUBLIC;

SET ROLE regress_sec_owner;
-- A handler the role may not execute is refused at registration.
SELECT tasker.register_template('{"namespace": "sec_ns", "name": "private",
  "steps": [{"name": "x", "handler": "sec.private"}]}');
SELECT tasker.register_template('{"namespace": "sec_ns", "name": "shifty",
  "steps": [{"name": "x", "handler": "sec_own.shifty", "max_attempts": 1}]}') > 0,
       tasker.register_template('{"namespace": "sec_ns", "name": "definer",
  "steps": [{"name": "x", "handler": "sec_own.definer", "max_attempts": 1}]}') > 0,
       tasker.register_template('{"namespace": "sec_ns", "name": "shared",
  "steps": [{"name": "x", "handler": "sec.shared", "max_attempts": 1}]}') > 0,
       tasker.register_template('{"namespace": "sec_ns", "name": "doomed",
  "steps": [{"name": "x", "handler": "sec_own.doomed", "max_attempts": 1}]}') > 0;
SELECT tasker.create_task('sec_ns', 'shifty') AS t1 \gset
SELECT tasker.create_task('sec_ns', 'shared') AS t2 \gset
RESET ROLE;
-- As registered, both run.
SELECT * FROM sec.wait_for(:t1);
SELECT * FROM sec.wait_for(:t2);

-- The handler redefines itself to read the secret: it runs with its
-- owner's rights, so the read is refused.
SET ROLE regress_sec_owner;
CREATE OR REPLACE FUNCTION sec_own.shifty(input jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('secret', (SELECT v FROM sec.secret)) $$;
SELECT tasker.create_task('sec_ns', 'shifty') AS t3 \gset
RESET ROLE;
SELECT * FROM sec.wait_for(:t3);

-- A SECURITY DEFINER handler given to a role that may read the secret
-- would read it: the owner changed since registration, so it does not run.
SET ROLE regress_sec_owner;
SELECT tasker.create_task('sec_ns', 'definer') AS t4 \gset
RESET ROLE;
SELECT * FROM sec.wait_for(:t4);
ALTER FUNCTION sec_own.definer(jsonb) OWNER TO regress_sec_reader;
SET ROLE regress_sec_owner;
SELECT tasker.create_task('sec_ns', 'definer') AS t5 \gset
RESET ROLE;
SELECT * FROM sec.wait_for(:t5);

-- EXECUTE revoked from the registering role: the run fails.
REVOKE EXECUTE ON FUNCTION sec.shared(jsonb) FROM regress_sec_owner;
SET ROLE regress_sec_owner;
SELECT tasker.create_task('sec_ns', 'shared') AS t6 \gset
-- The function dropped: the run fails.
DROP FUNCTION sec_own.doomed(jsonb);
SELECT tasker.create_task('sec_ns', 'doomed') AS t7 \gset
RESET ROLE;
SELECT * FROM sec.wait_for(:t6);
SELECT * FROM sec.wait_for(:t7);

--------------------------------------------------------------------------
-- Every SECURITY DEFINER function pins search_path; every API function
-- is one, but for a few that read no table.
--------------------------------------------------------------------------
SELECT count(*) AS definer_without_pinned_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'tasker'::regnamespace AND p.prosecdef
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);
SELECT string_agg(p.proname, ', ' ORDER BY p.proname) AS invoker_api_functions
  FROM pg_proc p
 WHERE p.pronamespace = 'tasker'::regnamespace AND p.proname !~ '^_' AND NOT p.prosecdef;

--------------------------------------------------------------------------
-- Look-alikes planted in public and in a schema first in the caller's
-- search_path are never called by the API.
--------------------------------------------------------------------------
CREATE SCHEMA sec_evil;
CREATE TABLE sec_evil.calls (fn text, called_as text);
GRANT USAGE ON SCHEMA sec_evil TO PUBLIC;
GRANT INSERT ON sec_evil.calls TO PUBLIC;
-- Each look-alike records its call, then does what the real one does.
DO $plant$
DECLARE
    target text;
BEGIN
    FOREACH target IN ARRAY ARRAY['sec_evil', 'public'] LOOP
        EXECUTE format($f$
            CREATE FUNCTION %1$I.now() RETURNS timestamptz LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('now', current_user); RETURN pg_catalog.now(); END $b$;
            CREATE FUNCTION %1$I.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('jsonb_build_object', current_user); RETURN '{}'; END $b$;
            CREATE FUNCTION %1$I.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('jsonb_typeof', current_user); RETURN pg_catalog.jsonb_typeof($1); END $b$;
            CREATE FUNCTION %1$I.length(text) RETURNS integer LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('length', current_user); RETURN pg_catalog.length($1); END $b$;
            CREATE FUNCTION %1$I.cardinality(anyarray) RETURNS integer LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('cardinality', current_user); RETURN pg_catalog.cardinality($1); END $b$;
            CREATE FUNCTION %1$I.hashtext(text) RETURNS integer LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('hashtext', current_user); RETURN pg_catalog.hashtext($1); END $b$;
            CREATE FUNCTION %1$I.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('pg_notify', current_user); PERFORM pg_catalog.pg_notify($1, $2); END $b$;
            CREATE FUNCTION %1$I.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('current_setting', current_user); RETURN pg_catalog.current_setting($1, $2); END $b$;
            CREATE FUNCTION %1$I.evil_texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('= on text', current_user); RETURN pg_catalog.texteq($1, $2); END $b$;
            CREATE OPERATOR %1$I.= (LEFTARG = text, RIGHTARG = text, FUNCTION = %1$I.evil_texteq);
            CREATE FUNCTION %1$I.evil_textregex(text, text) RETURNS boolean LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('~ on text', current_user); RETURN pg_catalog.textregexeq($1, $2); END $b$;
            CREATE OPERATOR %1$I.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = %1$I.evil_textregex);
            CREATE FUNCTION %1$I.evil_jsonb_text(jsonb, text) RETURNS text LANGUAGE plpgsql AS $b$
            BEGIN INSERT INTO sec_evil.calls VALUES ('->> on jsonb', current_user); RETURN pg_catalog.jsonb_object_field_text($1, $2); END $b$;
            CREATE OPERATOR %1$I.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = %1$I.evil_jsonb_text);
        $f$, target);
    END LOOP;
END $plant$;
-- (the look-alikes work: called from the search_path, they record it)
SET search_path = sec_evil, pg_catalog, public;
SELECT now() IS NOT NULL AS called, 'a' = 'a' AS equal;
RESET search_path;
SELECT fn, count(*) FROM sec_evil.calls GROUP BY fn ORDER BY fn;
TRUNCATE sec_evil.calls;

-- Every kind of caller uses the API with the look-alikes first in its
-- search_path.
SET search_path = sec_evil, pg_catalog, public;
SET tasker.publish_events = on;
SELECT tasker.register_template('{"namespace": "sec_evil_ns", "name": "flow", "version": "1.0.0",
  "identity_strategy": "strict", "default_dependent_system": "sec_sys",
  "context_schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
  "steps": [{"name": "a", "queue": "sec_q", "timeout": "5 minutes"},
            {"name": "b", "queue": "sec_q", "depends_on": "a", "max_attempts": 1},
            {"name": "c", "queue": "sec_q", "depends_on": ["b"], "skippable": true}]}') > 0 AS registered;
SELECT tasker.register_template_yaml($$
name: yflow
namespace_name: sec_evil_ns
version: 1.0.0
step_templates:
  - name: a
    handler_class: SecEvil::DoIt
    handler_config: {x: 1}
$$) > 0 AS registered_yaml;
SELECT tasker.yaml_template('name: t') IS NOT NULL AS mapped;
SELECT tasker.find_template('sec_evil_ns', 'flow') > 0 AS found;
SELECT tasker.context_violation('{"type": "object", "required": ["n"]}', '{}') AS violation;
SELECT tasker.create_task('sec_evil_ns', 'flow', context => '{"n": 1}', initiator => 'me',
                          reason => 'why', tags => '{t}', bypass_steps => '{c}') AS et \gset
SELECT tasker.create_task('sec_evil_ns', 'flow', context => '{"n": 1}', initiator => 'me',
                          reason => 'why', tags => '{t}', bypass_steps => '{c}') = :et AS deduplicated;
SELECT tasker.create_task('sec_evil_ns', 'yflow') > 0 AS created_yaml;
SELECT tasker.template_graph('sec_evil_ns', 'flow', format => 'dot') IS NOT NULL AS template_graph;
SELECT count(*) > 0 AS template_levels FROM tasker.template_dependency_levels('sec_evil_ns', 'flow');
SELECT count(*) > 0 AS steps FROM tasker.task_steps(:et);
SELECT count(*) > 0 AS readiness FROM tasker.step_readiness_status(:et);
SELECT count(*) > 0 AS context FROM tasker.task_execution_context(:et);
SELECT count(*) > 0 AS levels FROM tasker.dependency_levels(:et);
SELECT count(*) > 0 AS health FROM tasker.system_health_counts();
SELECT count(*) > 0 AS analytics FROM tasker.analytics_metrics();
SELECT count(*) >= 0 AS slowest FROM tasker.slowest_steps(namespace_filter => 'sec_evil_ns'),
                                     tasker.slowest_tasks(namespace_filter => 'sec_evil_ns');
-- a worker claims, heartbeats, completes, fails; an operator resolves and retries
SET ROLE regress_sec_worker;
SELECT step_id AS s1, attempt AS a1 FROM tasker.claim_steps('sec_q', 'evil worker', 1, '1 minute') \gset
SELECT tasker.extend_lease(:s1, :a1, '2 minutes') IS NOT NULL AS extended;
SELECT tasker.complete_step(:s1, :a1, '{"ok": true}') AS completed;
SELECT step_id AS s2, attempt AS a2 FROM tasker.claim_steps('sec_q', 'evil worker') \gset
SELECT tasker.fail_step(:s2, :a2, '{"message": "no"}', retryable => false) AS failed;
SELECT * FROM tasker.step_handler(:s2);
RESET ROLE;
SELECT tasker.retry_step(:s2) AS retried;
SELECT tasker.resolve_step(:s2, '{"by": "hand"}', 'operator') AS resolved;
SELECT tasker.task_graph(:et) IS NOT NULL AS graph, tasker.explain_task(:et) IS NOT NULL AS explained;
SELECT count(*) > 0 AS history FROM tasker.task_history(:et);
SELECT count(*) > 0 AS transitions FROM tasker.step_transitions(:et);
SELECT tasker.create_task('sec_evil_ns', 'flow', context => '{"n": 2}') AS et2 \gset
SET ROLE regress_sec_worker;
SELECT tasker.complete_steps(array_agg(step_id), array_agg(attempt)) AS batch_completed
  FROM tasker.claim_steps('sec_q', 'w', 10);
RESET ROLE;
SELECT tasker.cancel_task(:et2, 'stop') >= 0 AS cancelled;
SELECT tasker.reap_expired_leases() >= 0 AS reaped;
SELECT tasker.grant_worker('regress_sec_worker', 'sec_q2'), tasker.revoke_worker('regress_sec_worker', 'sec_q2');
SET ROLE regress_sec_owner;
SELECT tasker.create_task('sec_ns', 'child') > 0 AS created_as_submitter;
RESET ROLE;
RESET tasker.publish_events;
RESET search_path;
-- Not one call reached a look-alike.
SELECT fn, called_as FROM sec_evil.calls;
DROP FUNCTION public.now(), public.jsonb_build_object(VARIADIC text[]), public.jsonb_typeof(jsonb),
    public.length(text), public.cardinality(anyarray), public.hashtext(text),
    public.pg_notify(text, text), public.current_setting(text, boolean);
DROP OPERATOR public.= (text, text), public.~ (text, text), public.->> (jsonb, text);
DROP FUNCTION public.evil_texteq(text, text), public.evil_textregex(text, text),
    public.evil_jsonb_text(jsonb, text);

--------------------------------------------------------------------------
-- No argument is spliced into SQL: quotes, semicolons, dollar quotes,
-- format directives, control and high characters, and 1 MB strings go
-- through every text argument of the API.  Each call succeeds or fails
-- with a SQLSTATE that names a problem with the value; never a syntax
-- error, an undefined object from spliced text, or an internal error.
--------------------------------------------------------------------------
CREATE TABLE sec.victim (id int);
CREATE TABLE sec.hostile (label text PRIMARY KEY, v text NOT NULL);
INSERT INTO sec.hostile VALUES
    ('quote', $v$it's$v$),
    ('quotes', $v$'; DROP TABLE sec.victim; --$v$),
    ('double quote', $v$"; DROP TABLE sec.victim; --$v$),
    ('dollars', $v$$$; DROP TABLE sec.victim; $$$v$),
    ('tagged dollars', $v$$x$ || (SELECT 1) || $x$$v$),
    ('semicolons', ';;;'),
    ('backslashes', E'\\''\\\\'),
    ('format', '%s %I %L %% $1 :x'),
    ('identifier', 'sec.victim'),
    ('json', '{"a": [1, "}"]}'),
    ('control', (SELECT string_agg(chr(i), '') FROM generate_series(1, 31) i)),
    ('high', (SELECT string_agg(chr(i), '') FROM generate_series(127, 1000) i)
             || chr(8232) || chr(65279) || chr(128169)),
    ('megabyte', repeat($v$x'";$$\$v$, 200000));
SELECT label, length(v) FROM sec.hostile ORDER BY label;

-- try runs one statement with the value as its parameter $1 and records
-- the outcome: ok, or the SQLSTATE of the error.
CREATE TABLE sec.outcomes (call text, label text, outcome text);
CREATE FUNCTION sec.try(call text, stmt text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    h record;
BEGIN
    FOR h IN SELECT * FROM sec.hostile ORDER BY label LOOP
        BEGIN
            EXECUTE stmt USING h.v;
            INSERT INTO sec.outcomes VALUES (call, h.label, 'ok');
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO sec.outcomes VALUES (call, h.label, SQLSTATE);
        END;
    END LOOP;
END $$;

SELECT tasker.register_template('{"namespace": "sec_fuzz", "name": "t",
  "steps": [{"name": "a", "queue": "sec_fuzz_q"}, {"name": "b", "queue": "sec_fuzz_q"}]}') > 0;
SELECT tasker.grant_submitter('regress_sec_owner', 'sec_fuzz'),
       tasker.grant_worker('regress_sec_worker', 'sec_fuzz_q');

-- templates
SELECT sec.try('register_template namespace', $$SELECT tasker.register_template(jsonb_build_object('namespace', $1, 'name', 't'))$$);
SELECT sec.try('register_template name', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', $1))$$);
SELECT sec.try('register_template version', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't', 'version', $1))$$);
SELECT sec.try('register_template description', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 'd' || md5($1), 'description', $1, 'steps', jsonb_build_array(jsonb_build_object('name', 'a', 'description', $1))))$$);
SELECT sec.try('register_template identity_strategy', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't2', 'identity_strategy', $1))$$);
SELECT sec.try('register_template step name', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't3', 'steps', jsonb_build_array(jsonb_build_object('name', $1))))$$);
SELECT sec.try('register_template depends_on', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't4', 'steps', jsonb_build_array(jsonb_build_object('name', 'a', 'depends_on', $1))))$$);
SELECT sec.try('register_template handler', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't5', 'steps', jsonb_build_array(jsonb_build_object('name', 'a', 'handler', $1))))$$);
SELECT sec.try('register_template queue', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't6', 'steps', jsonb_build_array(jsonb_build_object('name', 'a', 'queue', $1))))$$);
SELECT sec.try('register_template timeout', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't7', 'steps', jsonb_build_array(jsonb_build_object('name', 'a', 'timeout', $1))))$$);
SELECT sec.try('register_template dependent_system', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't8', 'steps', jsonb_build_array(jsonb_build_object('name', 'a', 'dependent_system', $1))))$$);
SELECT sec.try('register_template field name', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 't9', $1, 1))$$);
SELECT sec.try('register_template context_schema', $$SELECT tasker.register_template(jsonb_build_object('namespace', 'sec_fuzz', 'name', 'c' || md5($1), 'context_schema', jsonb_build_object('type', 'object', 'required', jsonb_build_array($1), 'properties', jsonb_build_object($1, jsonb_build_object('enum', jsonb_build_array($1))))))$$);
SELECT sec.try('register_template_yaml document', $$SELECT tasker.register_template_yaml($1)$$);
SELECT sec.try('register_template_yaml scalar', $$SELECT tasker.register_template_yaml('namespace_name: sec_fuzz' || chr(10) || 'name: y' || md5($1) || chr(10) || 'description: ' || to_json($1)::text || chr(10) || 'step_templates:' || chr(10) || '  - name: a' || chr(10) || '    handler_config: {note: ' || to_json($1)::text || '}')$$);
SELECT sec.try('yaml_template', $$SELECT tasker.yaml_template($1)$$);
SELECT sec.try('yaml_to_jsonb', $$SELECT tasker.yaml_to_jsonb($1)$$);
SELECT sec.try('find_template', $$SELECT tasker.find_template($1, $1, $1)$$);
SELECT sec.try('template_graph', $$SELECT tasker.template_graph($1, $1, $1, $1)$$);
SELECT sec.try('template_graph format', $$SELECT tasker.template_graph('sec_fuzz', 't', NULL, $1)$$);
SELECT sec.try('template_dependency_levels', $$SELECT tasker.template_dependency_levels($1, $1, $1)$$);
SELECT sec.try('context_violation', $$SELECT tasker.context_violation(jsonb_build_object('type', 'object', 'required', jsonb_build_array($1)), jsonb_build_object($1, $1), $1)$$);
-- tasks
SELECT sec.try('create_task namespace', $$SELECT tasker.create_task($1, 't')$$);
SELECT sec.try('create_task name', $$SELECT tasker.create_task('sec_fuzz', $1)$$);
SELECT sec.try('create_task version', $$SELECT tasker.create_task('sec_fuzz', 't', $1)$$);
SELECT sec.try('create_task context', $$SELECT tasker.create_task('sec_fuzz', 't', context => jsonb_build_object($1, $1))$$);
SELECT sec.try('create_task texts', $$SELECT tasker.create_task('sec_fuzz', 't', initiator => $1, source_system => $1, reason => $1, tags => ARRAY[$1, $1], idempotency_key => $1)$$);
SELECT sec.try('create_task bypass_steps', $$SELECT tasker.create_task('sec_fuzz', 't', bypass_steps => ARRAY[$1])$$);
-- what went in came back out unchanged
SELECT count(DISTINCT h.label) AS values_stored_verbatim
  FROM tasker.tasks t JOIN sec.hostile h
    ON t.initiator = h.v AND t.reason = h.v AND t.source_system = h.v AND t.tags = ARRAY[h.v, h.v];
SELECT tasker.create_task('sec_fuzz', 't') AS ft \gset
SELECT sec.try('task_graph format', format($$SELECT tasker.task_graph(%s, $1)$$, :ft));
SELECT sec.try('cancel_task reason', $$SELECT tasker.cancel_task(tasker.create_task('sec_fuzz', 't'), $1)$$);
CREATE FUNCTION sec.new_step() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t bigint := tasker.create_task('sec_fuzz', 't');
BEGIN
    RETURN (SELECT min(s.workflow_step_id) FROM tasker.workflow_steps s WHERE s.task_id = t);
END $$;
SELECT sec.try('resolve_step results and reason', $$SELECT tasker.resolve_step(sec.new_step(), jsonb_build_object($1, $1), $1)$$);
SELECT sec.try('slowest_steps filters', $$SELECT * FROM tasker.slowest_steps(NULL, 10, $1, $1, $1)$$);
SELECT sec.try('slowest_tasks filters', $$SELECT * FROM tasker.slowest_tasks(NULL, 10, $1, $1, $1)$$);
-- steps, as the worker
SELECT count(tasker.create_task('sec_fuzz', 't')) AS created FROM generate_series(1, 20);
GRANT USAGE ON SCHEMA sec TO regress_sec_worker;
GRANT INSERT ON sec.outcomes TO regress_sec_worker;
GRANT SELECT ON sec.hostile TO regress_sec_worker;
GRANT EXECUTE ON FUNCTION sec.try(text, text) TO regress_sec_worker;
SET ROLE regress_sec_worker;
SELECT sec.try('claim_steps queue', $$SELECT * FROM tasker.claim_steps($1, 'w')$$);
SELECT sec.try('claim_steps worker', $$SELECT * FROM tasker.claim_steps('sec_fuzz_q', $1)$$);
SELECT sec.try('complete_step results', $$SELECT tasker.complete_step(c.step_id, c.attempt, jsonb_build_object($1, $1)) FROM tasker.claim_steps('sec_fuzz_q', 'w') c$$);
SELECT sec.try('fail_step error', $$SELECT tasker.fail_step(c.step_id, c.attempt, jsonb_build_object('message', $1, $1, $1)) FROM tasker.claim_steps('sec_fuzz_q', 'w') c$$);
SELECT sec.try('complete_steps results', $$SELECT tasker.complete_steps(array_agg(c.step_id), array_agg(c.attempt), array_agg(jsonb_build_object($1, $1))) FROM tasker.claim_steps('sec_fuzz_q', 'w') c$$);
RESET ROLE;
SELECT sec.try('claim_steps queue, as a superuser', $$SELECT * FROM tasker.claim_steps($1, 'w')$$);
-- the grant helpers
SELECT sec.try('grant_submitter namespace', $$SELECT tasker.grant_submitter('regress_sec_owner', $1)$$);
SELECT sec.try('grant_worker queue', $$SELECT tasker.grant_worker('regress_sec_worker', $1)$$);
SELECT sec.try('revoke_worker queue', $$SELECT tasker.revoke_worker('regress_sec_worker', $1)$$);
SELECT sec.try('grant_admin role', $$SELECT tasker.grant_admin($1::regrole)$$);

-- The outcomes, by call: ok, or refused with a SQLSTATE that names what
-- is wrong with the value (22xxx bad data, 23xxx constraint, 42501 not
-- allowed, 42602 invalid name, 42704 / 42883 no such object, 42710
-- duplicate, 54000 over a limit); any other SQLSTATE would show as itself.
-- (The 1 MB value is left out here: whether it is over a limit depends on
-- the tasker.max_* settings; it is counted with the others below.)
CREATE VIEW sec.judged AS
SELECT call, label, CASE
           WHEN outcome = 'ok' THEN 'ok'
           WHEN outcome ~ '^2[23]' OR outcome IN ('42501', '42602', '42704', '42883', '42710', '54000')
           THEN 'refused'
           ELSE outcome END AS outcome
  FROM sec.outcomes;
SELECT call, string_agg(DISTINCT outcome, ' ') AS outcomes
  FROM sec.judged WHERE label <> 'megabyte' GROUP BY call ORDER BY call;
SELECT count(*) AS megabyte_calls, count(*) FILTER (WHERE outcome IN ('ok', 'refused')) AS handled
  FROM sec.judged WHERE label = 'megabyte';
-- Never a syntax error, an undefined table or column, an internal error.
SELECT count(*) AS unclean FROM sec.outcomes
 WHERE outcome IN ('42601', '42P01', '42703', '42P02') OR outcome LIKE 'XX%';
SELECT to_regclass('sec.victim') IS NOT NULL AS victim_table_still_there;
-- The values that went through complete_step and fail_step were stored as
-- given (all but the 1 MB one, which may be over tasker.max_results_size).
SELECT count(DISTINCT h.label) AS results_stored_verbatim
  FROM tasker.workflow_steps s JOIN sec.hostile h ON s.results = jsonb_build_object(h.v, h.v)
 WHERE h.label <> 'megabyte';
SELECT count(DISTINCT h.label) AS errors_stored_verbatim
  FROM tasker.workflow_steps s JOIN sec.hostile h ON s.error ->> 'message' = h.v
 WHERE h.label <> 'megabyte';

--------------------------------------------------------------------------
-- Clean up: the grants, the schemas, the roles.
--------------------------------------------------------------------------
SELECT count(*) FILTER (WHERE CASE kind
           WHEN 'admin' THEN tasker.revoke_admin(role)
           WHEN 'submitter' THEN tasker.revoke_submitter(role, scope)
           ELSE tasker.revoke_worker(role, scope) END) AS revoked
  FROM tasker.grants WHERE role::text LIKE 'regress_sec%';
DROP SCHEMA sec, sec_own, sec_evil CASCADE;
DROP ROLE regress_sec_owner, regress_sec_reader, regress_sec_worker;
