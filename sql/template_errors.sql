--
-- template_errors: what register_template refuses, and how.
--
-- Every bad template gets an error with its own SQLSTATE and a message
-- naming the offending value, and nothing of it is stored.  Each refusal
-- sits next to the good input it differs from.  Namespace: tpl_err (the
-- namespace tpl_err_never is only ever named by refused templates).
--
\set SHOW_CONTEXT never

CREATE SCHEMA tpl_err;

-- Handlers, good and bad.
CREATE FUNCTION tpl_err.good_handler(jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION tpl_err.text_handler(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION tpl_err.returns_text(jsonb) RETURNS text LANGUAGE sql AS 'SELECT $1::text';
CREATE FUNCTION tpl_err.two_args(jsonb, jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION tpl_err.many_rows(jsonb) RETURNS SETOF jsonb LANGUAGE sql AS 'SELECT $1';
CREATE PROCEDURE tpl_err.a_procedure(jsonb) LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION tpl_err.private_handler(jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1';
REVOKE EXECUTE ON FUNCTION tpl_err.private_handler(jsonb) FROM PUBLIC;

--------------------------------------------------------------------------
-- The document: NULL, wrong JSON shapes, unknown fields.
--------------------------------------------------------------------------
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "shape"}') > 0 AS registered;
CALL expect_error($$ SELECT tasker.register_template(NULL) $$);
CALL expect_error($$ SELECT tasker.register_template('[{"name": "shape"}]') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": ["shape"]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "shape", "steps": {"name": "a"}}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "shape", "steps": ["a"]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "shape", "steps": [{"description": "no name"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "shape", "description": 42}') $$);

-- Unknown fields are errors, so that a typo cannot silently drop something:
-- "depend_on" would otherwise be a step with no dependency at all.
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "typo",
    "steps": [{"name": "a"}, {"name": "b", "depends_on": ["a"]}]}') > 0 AS registered;
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "typo",
    "steps": [{"name": "a"}, {"name": "b", "depend_on": ["a"]}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "typo",
    "retry_limit": 3}') $$);

-- Names: letters, digits, "_", ".", ":" and "-" (a queue name ends up in a
-- NOTIFY channel name, so namespaces and queues are at most 50 characters).
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "Billing.v2:nightly-run_1"}') > 0 AS registered;
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "nightly run"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "", "name": "empty_namespace"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "bad_step",
    "steps": [{"name": "-leading-dash"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template(jsonb_build_object('namespace', 'tpl_err_never',
    'name', 'long_queue', 'steps', jsonb_build_array(jsonb_build_object('name', 'a', 'queue', repeat('q', 51))))) $$);

--------------------------------------------------------------------------
-- Versions: MAJOR.MINOR.PATCH, non-negative integers without leading zeros.
--------------------------------------------------------------------------
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "semver", "version": "10.0.1"}') > 0 AS registered;
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "semver", "version": "1.0"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "semver", "version": "v1.0.0"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "semver", "version": "1.0.0-beta"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "semver", "version": "01.0.0"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "semver", "version": 1}') $$);

--------------------------------------------------------------------------
-- identity_strategy and context_schema.
--------------------------------------------------------------------------
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "identity", "identity_strategy": "caller_provided"}') > 0 AS registered;
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "identity", "identity_strategy": "hash"}') $$);

-- The context schema is a JSON-schema subset: type, required, properties,
-- enum, items, additionalProperties (true or false), and annotations.
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "schema", "context_schema": {
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "order",
    "type": "object", "required": ["id"], "additionalProperties": false,
    "properties": {"id": {"type": "integer"}, "mode": {"enum": ["fast", "slow"]},
                   "lines": {"type": "array", "items": {"type": ["string", "null"]}}}}}') > 0 AS registered;
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "schema",
    "context_schema": "object"}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "schema",
    "context_schema": {"type": "object", "properties": {"id": {"type": "int"}}}}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "schema",
    "context_schema": {"type": "object", "required": "id"}}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "schema",
    "context_schema": {"type": "string", "pattern": "^[0-9]+$"}}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "schema",
    "context_schema": {"type": "object", "additionalProperties": {"type": "string"}}}') $$);

--------------------------------------------------------------------------
-- Steps and the DAG.
--------------------------------------------------------------------------
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "dag", "steps": [
    {"name": "a"}, {"name": "b", "depends_on": "a"}, {"name": "c", "depends_on": ["a", "b"]}]}') > 0 AS registered;

-- A duplicate step name.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "dag", "steps": [
    {"name": "a"}, {"name": "b", "depends_on": "a"}, {"name": "a"}]}') $$);

-- A dependency on a step the template does not have (in any spelling).
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "dag", "steps": [
    {"name": "a"}, {"name": "b", "depends_on": "a"}, {"name": "c", "depends_on": ["a", "bb"]}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "dag", "steps": [
    {"name": "a"}, {"name": "b", "depends_on_step": "z"}]}') $$);

-- Dependencies are step names: strings, or a list of them.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "dag", "steps": [
    {"name": "a"}, {"name": "b", "depends_on": [1]}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "dag", "steps": [
    {"name": "a"}, {"name": "b", "depends_on_steps": {"a": true}}]}') $$);

-- A step that depends on itself.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "dag", "steps": [
    {"name": "a"}, {"name": "b", "depends_on": ["a", "b"]}]}') $$);

-- A cycle: the message names the steps on it, and only those (here "start"
-- leads into the cycle and "report" hangs off it; neither is on it).
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "dag", "steps": [
    {"name": "start"},
    {"name": "charge", "depends_on": ["start", "refund"]},
    {"name": "ship", "depends_on": "charge"},
    {"name": "refund", "depends_on": "ship"},
    {"name": "report", "depends_on": "refund"}]}') $$);

--------------------------------------------------------------------------
-- Retries and timeouts.
--------------------------------------------------------------------------
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "limits", "steps": [
    {"name": "a", "max_attempts": 1, "timeout": 0.5},
    {"name": "b", "default_retry_limit": 10, "timeout": "1 day"}]}') > 0 AS registered;

-- max_attempts (or default_retry_limit) is a positive integer: one attempt
-- is the least a step can have.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "max_attempts": 0}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "max_attempts": -3}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "default_retry_limit": 0}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "max_attempts": 2.5}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "max_attempts": "3"}]}') $$);

-- retryable and skippable are booleans.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "retryable": "yes"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "default_retryable": 0}]}') $$);

-- A timeout is a positive number of seconds or an interval.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "timeout": -5}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "timeout": "0 seconds"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "limits", "steps": [
    {"name": "a", "timeout": "soon"}]}') $$);

--------------------------------------------------------------------------
-- Handlers: an existing function (jsonb) RETURNS jsonb that the registering
-- role may execute.
--------------------------------------------------------------------------
SELECT tasker.register_template('{"namespace": "tpl_err", "name": "handlers", "steps": [
    {"name": "by_name", "handler": "tpl_err.good_handler"},
    {"name": "by_signature", "handler": "tpl_err.good_handler(jsonb)"}]}') > 0 AS registered;

-- A function that does not exist (the name is never run as SQL: it is
-- looked up as a function signature, so nothing can be injected).
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.no_such_handler"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.good_handler(jsonb); DROP SCHEMA tpl_err CASCADE"}]}') $$);

-- Handler names are looked up with search_path = pg_catalog, whatever the
-- session's: a handler must be named with its schema.
SET search_path = tpl_err, public;
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "good_handler"}]}') $$);
RESET search_path;

-- Functions of the wrong type: other arguments, another result, a set, a
-- procedure; and a handler given as something other than a string.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.text_handler(text)"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.returns_text"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.two_args(jsonb, jsonb)"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.many_rows"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.a_procedure"}]}') $$);
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": {"function": "tpl_err.good_handler"}}]}') $$);

-- A handler runs as the role that registers its template, so that role must
-- be allowed to execute it.  regress_tpl_err_submitter submits to namespace
-- tpl_err_never (doc/security.md) but may not execute
-- tpl_err.private_handler, until it is granted EXECUTE.  (In a transaction
-- that is rolled back: nothing of it stays.)
BEGIN;
CREATE ROLE regress_tpl_err_submitter;
SELECT tasker.grant_submitter('regress_tpl_err_submitter', 'tpl_err_never');
GRANT USAGE ON SCHEMA tpl_err TO regress_tpl_err_submitter;
SET LOCAL ROLE regress_tpl_err_submitter;
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.private_handler"}]}') $$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION tpl_err.private_handler(jsonb) TO regress_tpl_err_submitter;
SET LOCAL ROLE regress_tpl_err_submitter;
SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "handlers", "steps": [
    {"name": "a", "handler": "tpl_err.private_handler"}]}') > 0 AS registered;
RESET ROLE;
SELECT namespace, name, owner_role FROM tasker.templates WHERE namespace = 'tpl_err_never';
ROLLBACK;

--------------------------------------------------------------------------
-- Nothing half-written.
--------------------------------------------------------------------------
-- A refusal found late, after the namespace, the template and its first
-- step were inserted (the second step's dependent system name is checked
-- while the steps are stored), leaves none of them behind.
CALL expect_error($$ SELECT tasker.register_template('{"namespace": "tpl_err_never", "name": "late",
    "default_dependent_system": "tpl_err_never_system", "steps": [
    {"name": "a"}, {"name": "b", "dependent_system": "no spaces allowed"}]}') $$);

-- Every refused template above named namespace tpl_err_never: it does not
-- exist, nor do any of their templates, steps, edges or dependent systems.
SELECT (SELECT count(*) FROM tasker.namespaces WHERE name = 'tpl_err_never') AS namespaces,
       (SELECT count(*) FROM tasker.named_tasks t JOIN tasker.namespaces n USING (namespace_id)
         WHERE n.name = 'tpl_err_never') AS templates,
       (SELECT count(*) FROM tasker.dependent_systems WHERE name LIKE 'tpl_err_never%') AS dependent_systems;

-- Only the good templates were stored, each with all its steps and edges.
SELECT name, version, step_count, steps,
       (SELECT count(*) FROM tasker.named_step_edges e WHERE e.named_task_id = t.named_task_id) AS edges
  FROM tasker.templates t
 WHERE namespace = 'tpl_err'
 ORDER BY name;

