-- Limits on what comes in.  Each is a setting only a superuser may change
-- (a submitter or a worker must not lift it for itself); going over one
-- raises SQLSTATE 54000 (program_limit_exceeded) naming the setting, and
-- nothing is written.  Namespace: lim.
\set SHOW_CONTEXT never

-- refused runs a statement that must fail and shows its SQLSTATE, message
-- (step ids as N: they depend on the tests before), detail and hint.
CREATE PROCEDURE pg_temp.refused(statement text) LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
BEGIN
    EXECUTE statement;
    RAISE EXCEPTION 'not refused: %', statement;
EXCEPTION WHEN program_limit_exceeded OR insufficient_privilege THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'error %: %', state, regexp_replace(message, 'step [0-9]+', 'step N')
        USING DETAIL = detail, HINT = hint;
END $$;

SELECT name, setting, unit, context, short_desc
  FROM pg_settings
 WHERE name IN ('tasker.max_template_steps', 'tasker.max_step_dependencies',
                'tasker.max_context_size', 'tasker.max_results_size')
 ORDER BY name;

-- Templates: at most tasker.max_template_steps steps (default 1,000).
CALL pg_temp.refused($$ SELECT tasker.register_template(jsonb_build_object('namespace', 'lim', 'name', 'huge',
    'steps', (SELECT jsonb_agg(jsonb_build_object('name', 's' || i)) FROM generate_series(1, 1001) i))) $$);
SET tasker.max_template_steps = 3;
CALL pg_temp.refused($$ SELECT tasker.register_template('{"namespace": "lim", "name": "four",
    "steps": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}]}') $$);
SELECT tasker.register_template('{"namespace": "lim", "name": "three",
    "steps": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}') IS NOT NULL AS at_the_limit;
-- the YAML form is held to the same limit
CALL pg_temp.refused($$ SELECT tasker.register_template_yaml($y$
name: four
namespace_name: lim
version: 1.0.0
step_templates:
  - name: a
  - name: b
  - name: c
  - name: d
$y$) $$);
RESET tasker.max_template_steps;
SELECT count(*) AS lim_templates FROM tasker.templates WHERE namespace = 'lim';

-- Steps: at most tasker.max_step_dependencies parents each (default 200):
-- a step's input carries each parent's results.
SET tasker.max_step_dependencies = 2;
CALL pg_temp.refused($$ SELECT tasker.register_template('{"namespace": "lim", "name": "join3", "steps": [
    {"name": "a"}, {"name": "b"}, {"name": "c"},
    {"name": "all", "depends_on": ["a", "b", "c"]}]}') $$);
SELECT tasker.register_template('{"namespace": "lim", "name": "join2", "steps": [
    {"name": "a"}, {"name": "b"},
    {"name": "all", "depends_on": ["a", "b", "a"]}]}') IS NOT NULL AS repeated_names_count_once;
RESET tasker.max_step_dependencies;

-- Contexts: at most tasker.max_context_size (default 16 MB, measured as
-- the jsonb value, uncompressed): every step's input carries the context.
CALL pg_temp.refused($$ SELECT tasker.create_task('lim', 'three', context => jsonb_build_object('blob', repeat('x', 17 * 1024 * 1024))) $$);
SELECT tasker.create_task('lim', 'three', context => jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024))) AS t_big \gset
SELECT octet_length(context ->> 'blob') AS blob_bytes FROM tasker.tasks WHERE task_id = :t_big;
SELECT tasker.cancel_task(:t_big);
SET tasker.max_context_size = '1kB';
CALL pg_temp.refused($$ SELECT tasker.create_task('lim', 'three', context => jsonb_build_object('blob', repeat('x', 2000))) $$);
SELECT count(*) AS tasks FROM tasker.tasks t JOIN tasker.named_tasks n USING (named_task_id)
 WHERE n.template ->> 'namespace' = 'lim';
RESET tasker.max_context_size;

-- Results: at most tasker.max_results_size (default 1 MB), for
-- complete_step, complete_steps, resolve_step and fail_step's error
-- document: a child's input carries its parents' results.
SELECT tasker.create_task('lim', 'three') AS t \gset
SELECT step_name, attempt FROM tasker.claim_steps('lim', 'lim-worker', 3) ORDER BY step_id;
SELECT workflow_step_id AS a FROM tasker.workflow_steps WHERE task_id = :t AND name = 'a' \gset
SELECT workflow_step_id AS b FROM tasker.workflow_steps WHERE task_id = :t AND name = 'b' \gset
SELECT workflow_step_id AS c FROM tasker.workflow_steps WHERE task_id = :t AND name = 'c' \gset
CALL pg_temp.refused(format($$ SELECT tasker.complete_step(%s, 1, jsonb_build_object('rows', repeat('x', 2 * 1024 * 1024))) $$, :a));
SET tasker.max_results_size = '1kB';
CALL pg_temp.refused(format($$ SELECT tasker.complete_step(%s, 1, jsonb_build_object('rows', repeat('x', 2000))) $$, :a));
CALL pg_temp.refused(format($$ SELECT tasker.complete_steps(ARRAY[%s, %s], ARRAY[1, 1], ARRAY['{}', jsonb_build_object('rows', repeat('x', 2000))]) $$, :a, :b));
CALL pg_temp.refused(format($$ SELECT tasker.fail_step(%s, 1, jsonb_build_object('trace', repeat('x', 2000))) $$, :c));
CALL pg_temp.refused(format($$ SELECT tasker.resolve_step(%s, jsonb_build_object('rows', repeat('x', 2000))) $$, :c));
-- nothing changed; small documents go through
SELECT name, current_state FROM tasker.workflow_steps WHERE task_id = :t ORDER BY workflow_step_id;
SELECT tasker.complete_steps(ARRAY[:a, :b], ARRAY[1, 1], ARRAY['{"n": 1}', '{"n": 2}']::jsonb[]);
SELECT tasker.fail_step(:c, 1, '{"message": "short"}', retryable => false);
RESET tasker.max_results_size;

-- Only a superuser (or a role granted SET on the parameter) may change them.
CREATE ROLE lim_user;
SET ROLE lim_user;
CALL pg_temp.refused($$ SET tasker.max_context_size = '1GB' $$);
RESET ROLE;
DROP ROLE lim_user;
