--
-- dependency_levels: each step's level is the length of the longest path
-- to it from a root (roots are 0), for a task (dependency_levels) and for
-- a template (template_dependency_levels).  Computed in one pass over the
-- edges: a layered DAG whose paths number in the billions takes
-- milliseconds (the Rails engine's recursive CTE walks every path).
--
-- Namespace: lvl_test.
--
\set SHOW_CONTEXT never

CREATE SCHEMA lvl_test;

CREATE PROCEDURE lvl_test.expect_error(statement text) LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
BEGIN
    BEGIN
        EXECUTE statement;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        RAISE NOTICE 'error %: %', state, regexp_replace(message, '\m(task|step) [0-9]+\M', '\1 #', 'g');
        RETURN;
    END;
    RAISE EXCEPTION 'expected an error from: %', statement;
END $$;

CREATE FUNCTION lvl_test.task(label text) RETURNS bigint LANGUAGE sql AS $$
    SELECT k.task_id FROM tasker.tasks k
      JOIN tasker.named_tasks t USING (named_task_id) JOIN tasker.namespaces n USING (namespace_id)
     WHERE n.name = 'lvl_test' AND k.reason = label
$$;

-- levels shows a task's levels by step name.
CREATE FUNCTION lvl_test.levels(task bigint) RETURNS TABLE (level integer, steps text)
    LANGUAGE sql AS $$
    SELECT l.dependency_level, string_agg(s.name, ', ' ORDER BY s.workflow_step_id)
      FROM tasker.dependency_levels(task) l
      JOIN tasker.workflow_steps s ON s.task_id = task AND s.workflow_step_id = l.workflow_step_id
     GROUP BY l.dependency_level ORDER BY l.dependency_level
$$;

-- The reference shapes (/work/shared/workflows).
SELECT tasker.register_template('{
  "namespace": "lvl_test", "name": "linear_workflow", "version": "1.0.0",
  "steps": [
    {"name": "initialize_data"},
    {"name": "validate_input", "depends_on": ["initialize_data"]},
    {"name": "process_data", "depends_on": ["validate_input"]},
    {"name": "transform_results", "depends_on": ["process_data"]},
    {"name": "validate_output", "depends_on": ["transform_results"]},
    {"name": "finalize_workflow", "depends_on": ["validate_output"]}
  ]}') IS NOT NULL AS linear;
SELECT tasker.register_template('{
  "namespace": "lvl_test", "name": "diamond_workflow", "version": "1.0.0",
  "steps": [
    {"name": "start_workflow"},
    {"name": "branch_one_process", "depends_on": ["start_workflow"]},
    {"name": "branch_two_process", "depends_on": ["start_workflow"]},
    {"name": "branch_one_validate", "depends_on": ["branch_one_process"]},
    {"name": "branch_two_validate", "depends_on": ["branch_two_process"]},
    {"name": "merge_branches", "depends_on": ["branch_one_validate", "branch_two_validate"]},
    {"name": "end_workflow", "depends_on": ["merge_branches"]}
  ]}') IS NOT NULL AS diamond;
SELECT tasker.register_template('{
  "namespace": "lvl_test", "name": "parallel_merge_workflow", "version": "1.0.0",
  "steps": [
    {"name": "fetch_user_data"},
    {"name": "fetch_order_data"},
    {"name": "fetch_inventory_data"},
    {"name": "fetch_pricing_data"},
    {"name": "process_user_data", "depends_on": ["fetch_user_data"]},
    {"name": "process_order_data", "depends_on": ["fetch_order_data"]},
    {"name": "merge_all_data", "depends_on": ["process_user_data", "process_order_data",
                                              "fetch_inventory_data", "fetch_pricing_data"]}
  ]}') IS NOT NULL AS parallel_merge;
SELECT tasker.register_template('{
  "namespace": "lvl_test", "name": "tree_workflow", "version": "1.0.0",
  "steps": [
    {"name": "root_initialization"},
    {"name": "branch_a_setup", "depends_on": ["root_initialization"]},
    {"name": "branch_b_setup", "depends_on": ["root_initialization"]},
    {"name": "branch_a_task_one", "depends_on": ["branch_a_setup"]},
    {"name": "branch_a_task_two", "depends_on": ["branch_a_setup"]},
    {"name": "branch_b_task_one", "depends_on": ["branch_b_setup"]},
    {"name": "branch_b_task_two", "depends_on": ["branch_b_setup"]},
    {"name": "aggregate_results", "depends_on": ["branch_a_task_one", "branch_a_task_two",
                                                 "branch_b_task_one", "branch_b_task_two"]}
  ]}') IS NOT NULL AS tree;
SELECT tasker.register_template('{
  "namespace": "lvl_test", "name": "mixed_workflow", "version": "1.0.0",
  "steps": [
    {"name": "init_auth"},
    {"name": "init_config"},
    {"name": "validate_permissions", "depends_on": ["init_auth"]},
    {"name": "setup_environment", "depends_on": ["init_config"]},
    {"name": "begin_processing", "depends_on": ["validate_permissions", "setup_environment"]},
    {"name": "process_critical_data", "depends_on": ["begin_processing"]},
    {"name": "process_optional_data", "depends_on": ["begin_processing"]},
    {"name": "cleanup_temp_files", "depends_on": ["setup_environment"]},
    {"name": "finalize_and_report", "depends_on": ["process_critical_data", "cleanup_temp_files"]}
  ]}') IS NOT NULL AS mixed;

-- Templates: levels in order, steps of a level in template order.
SELECT step_name, dependency_level FROM tasker.template_dependency_levels('lvl_test', 'linear_workflow');
SELECT step_name, dependency_level FROM tasker.template_dependency_levels('lvl_test', 'diamond_workflow');
SELECT step_name, dependency_level FROM tasker.template_dependency_levels('lvl_test', 'parallel_merge_workflow', '1.0.0');
SELECT step_name, dependency_level FROM tasker.template_dependency_levels('lvl_test', 'tree_workflow');
-- the longest path counts: finalize_and_report is 2 steps after
-- cleanup_temp_files but 4 after init_auth, so its level is 4
SELECT step_name, dependency_level FROM tasker.template_dependency_levels('lvl_test', 'mixed_workflow');

-- Tasks: the same levels, by workflow step.  (levels() is a volatile
-- function, so it sees the task its argument creates; a stable function
-- such as dependency_levels sees the snapshot of the query that calls it.)
SELECT * FROM lvl_test.levels(tasker.create_task('lvl_test', 'mixed_workflow'));
SELECT * FROM lvl_test.levels(tasker.create_task('lvl_test', 'diamond_workflow'));
-- a task's rows name its own steps, each once, ordered by level then id
SELECT tasker.create_task('lvl_test', 'tree_workflow', reason => 'tree') IS NOT NULL AS created;
SELECT count(*) AS rows, count(DISTINCT l.workflow_step_id) AS steps,
       bool_and(s.task_id IS NOT NULL) AS all_of_the_task,
       bool_and((l.dependency_level, l.workflow_step_id) > (l.prev_level, l.prev_id)) AS ordered
  FROM (SELECT d.*, lag(d.dependency_level, 1, -1) OVER (ORDER BY d.o) AS prev_level,
               lag(d.workflow_step_id, 1, 0::bigint) OVER (ORDER BY d.o) AS prev_id
          FROM tasker.dependency_levels(lvl_test.task('tree')) WITH ORDINALITY d(workflow_step_id, dependency_level, o)) l
  LEFT JOIN tasker.workflow_steps s
    ON s.workflow_step_id = l.workflow_step_id AND s.task_id = lvl_test.task('tree');

-- Levels do not change as steps run.
SELECT tasker.create_task('lvl_test', 'linear_workflow', reason => 'run') IS NOT NULL AS created;
SELECT count(*) AS claimed FROM tasker.claim_steps('lvl_test', 'worker', 10);
SELECT * FROM lvl_test.levels(lvl_test.task('run'));

-- A layered DAG where each step depends on the one before and on one
-- earlier step: 200 steps, 397 edges, more paths than can be counted; the
-- longest path goes through every step.
SELECT setseed(0.25);
SELECT tasker.register_template(jsonb_build_object(
    'namespace', 'lvl_test', 'name', 'layered', 'version', '1.0.0',
    'steps', (SELECT jsonb_agg(jsonb_build_object('name', 's' || i, 'depends_on', deps) ORDER BY i)
                FROM (SELECT i, CASE WHEN i = 1 THEN '[]'::jsonb
                                     WHEN i = 2 THEN '["s1"]'::jsonb
                                     ELSE jsonb_build_array('s' || (i - 1),
                                                            's' || (1 + floor(random() * (i - 2)))::int)
                                END AS deps
                        FROM generate_series(1, 200) i) g))) IS NOT NULL AS layered;
SELECT count(*) AS steps, min(dependency_level) AS first, max(dependency_level) AS last,
       bool_and(dependency_level = substr(step_name, 2)::integer - 1) AS level_is_position
  FROM tasker.template_dependency_levels('lvl_test', 'layered');
SELECT tasker.create_task('lvl_test', 'layered', reason => 'layered') IS NOT NULL AS created;
SELECT count(*) AS steps, max(dependency_level) AS last
  FROM tasker.dependency_levels(lvl_test.task('layered'));

-- A template without steps has no levels.
SELECT tasker.register_template('{"namespace": "lvl_test", "name": "empty", "steps": []}') IS NOT NULL AS empty;
SELECT count(*) FROM tasker.template_dependency_levels('lvl_test', 'empty');
SELECT tasker.create_task('lvl_test', 'empty', reason => 'empty') IS NOT NULL AS created;
SELECT count(*) FROM tasker.dependency_levels(lvl_test.task('empty'));

-- The graph routine refuses a cycle and an edge to an unknown node.
CALL lvl_test.expect_error($$SELECT tasker._longest_path_levels('{10, 20, 30}', '{10, 20, 30}', '{20, 30, 20}')$$);
CALL lvl_test.expect_error($$SELECT tasker._longest_path_levels('{10, 20}', '{10}', '{40}')$$);
SELECT tasker._longest_path_levels('{30, 10, 20}', '{10, 20, 10}', '{20, 30, 30}') AS levels_of_30_10_20;

-- Bad input.
CALL lvl_test.expect_error('SELECT * FROM tasker.dependency_levels(NULL)');
CALL lvl_test.expect_error('SELECT * FROM tasker.dependency_levels(-1)');
CALL lvl_test.expect_error($$SELECT * FROM tasker.template_dependency_levels('lvl_test', 'nope')$$);
CALL lvl_test.expect_error($$SELECT * FROM tasker.template_dependency_levels('lvl_test', 'layered', '9.9.9')$$);
CALL lvl_test.expect_error($$SELECT * FROM tasker.template_dependency_levels(NULL, 'layered')$$);
