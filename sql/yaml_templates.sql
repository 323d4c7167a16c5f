--
-- yaml_templates: task templates written in the Rails engine's YAML
-- task-handler format, registered with tasker.register_template_yaml(text).
--
-- First tasker.yaml_to_jsonb, the libyaml reader under it: how scalars are
-- typed, aliases and merge keys.  Then the Rails engine's four reference
-- shapes (linear, diamond, tree, mixed; /work/shared/workflows has them as
-- template JSON) written as the engine writes its YAML: the stored
-- templates, steps, edges and graphs; where handler_class and handler_config
-- are kept; a task run from one.  Last, what is refused: YAML that does not
-- parse (with its line and column), YAML of the wrong shape, bad templates.
-- Namespaces: yaml_test, yaml_test_queues; yaml_test_never is only ever
-- named by refused templates.
--
\set SHOW_CONTEXT never

CREATE SCHEMA yaml_test;

-- edges lists a registered template's DAG as "parent -> child", in step order.
CREATE FUNCTION yaml_test.edges(ns text, template text) RETURNS SETOF text
    LANGUAGE sql AS $$
    SELECT p.name || ' -> ' || c.name
      FROM tasker.named_step_edges e
      JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
      JOIN tasker.named_steps c ON c.named_step_id = e.to_named_step_id
     WHERE e.named_task_id = tasker.find_template(ns, template)
     ORDER BY c.position, p.position
$$;

-- steps shows how each step of a template will run.
CREATE FUNCTION yaml_test.steps(ns text, template text)
    RETURNS TABLE (pos integer, name text, queue text, handler regprocedure, retryable boolean,
                   max_attempts integer, timeout interval, skippable boolean, dependent_system text)
    LANGUAGE sql AS $$
    SELECT s.position, s.name, s.queue, s.handler, s.retryable, s.max_attempts, s.timeout,
           s.skippable, d.name
      FROM tasker.named_steps s
      LEFT JOIN tasker.dependent_systems d USING (dependent_system_id)
     WHERE s.named_task_id = tasker.find_template(ns, template)
     ORDER BY s.position
$$;

-- A SQL handler, for a step that runs in the database.
CREATE FUNCTION yaml_test.noop(input jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;

--------------------------------------------------------------------------
-- yaml_to_jsonb: one YAML document as jsonb.
--------------------------------------------------------------------------

-- Plain scalars are typed as the Rails engine's YAML 1.1 reader (Psych)
-- types them: null, booleans (true/yes/on, false/no/off; y and n stay
-- strings), integers (decimal, 0x, 0b, 0-octal, "_" between digits),
-- floats.  A version such as 1.0.0, a date, "09" stay strings.
SELECT key, value, jsonb_typeof(value) AS type
  FROM jsonb_each(tasker.yaml_to_jsonb($y$
a_null: ~
b_null: null
c_empty:
d_true: yes
e_false: Off
f_y: y
g_int: 1_000
h_negative: -42
i_hex: 0x1F
j_octal: 017
k_binary: 0b101
l_float: 1.5
m_point_five: .5
n_exponent: 6.02e23
o_version: 1.0.0
p_date: 2001-12-14
q_leading_zero: 09
r_word: ready
$y$))
 ORDER BY key;

-- Quoted and block scalars are strings; the core tags force a type.
SELECT jsonb_pretty(tasker.yaml_to_jsonb($y$
quoted: ["yes", '42', "~", "1.5"]
tagged: [!!str 42, !!str yes, !!int "42", !!float "1", !!bool "on", !!null ""]
literal: |
  line one
  line two
folded: >
  one
  paragraph
$y$));

-- Anchors and aliases are resolved; a merge key "<<" copies a mapping's
-- pairs, the keys written beside it winning (and an earlier mapping in a
-- list of them winning over a later one).
SELECT jsonb_pretty(tasker.yaml_to_jsonb($y$
defaults: &defaults
  retryable: true
  retry_limit: 3
tags: &tags [a, b]
step_one:
  <<: *defaults
  retry_limit: 5
  tags: *tags
step_two:
  <<: [{retry_limit: 1, queue: one}, *defaults]
$y$));

-- A document that is one scalar is a jsonb scalar; an empty document is
-- JSON null; text with no document at all is SQL NULL.
SELECT tasker.yaml_to_jsonb('42') AS number, tasker.yaml_to_jsonb('"text"') AS string,
       tasker.yaml_to_jsonb('---') AS empty_document,
       tasker.yaml_to_jsonb('# only a comment') IS NULL AS no_document;

--------------------------------------------------------------------------
-- The Rails engine's reference shapes, as it writes them in YAML.
--------------------------------------------------------------------------

-- Linear: six steps in a chain.  The Rails suite's steps are all
-- Tasker::Testing::ConfigurableFailureHandler, told by handler_config how
-- often to fail.  yaml_template shows the register_template JSON the YAML
-- maps to: namespace_name -> namespace, schema -> context_schema (its
-- "default" annotation dropped), handler_class -> queue (the class path in
-- snake_case, "::" -> "."); handler_config and task_handler_class are not
-- in it (they are kept beside the template, below).
SELECT jsonb_pretty(tasker.yaml_template($y$
---
name: linear_workflow_task
namespace_name: yaml_test
version: 1.0.0
task_handler_class: LinearWorkflowTask
description: "reference shape 'linear' (6 steps)"
default_dependent_system: yaml_test_system
schema:
  type: object
  properties:
    workflow_type:
      type: string
      default: linear
    batch_id:
      type: string
step_templates:
  - name: initialize_data
    description: Initialize workflow data
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: validate_input
    description: Validate input data
    depends_on_step: initialize_data
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
$y$));

-- Registered for real, the whole chain.  The Rails spellings of the retry
-- settings (default_retryable, default_retry_limit) work as they do in JSON.
SELECT tasker.register_template_yaml($y$
---
name: linear_workflow_task
namespace_name: yaml_test
version: 1.0.0
task_handler_class: LinearWorkflowTask
description: "reference shape 'linear' (6 steps)"
default_dependent_system: yaml_test_system
named_steps:
  - initialize_data
  - validate_input
  - process_data
  - transform_results
  - validate_output
  - finalize_workflow
schema:
  type: object
  properties:
    workflow_type:
      type: string
      default: linear
    batch_id:
      type: string
step_templates:
  - name: initialize_data
    description: Initialize workflow data
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: validate_input
    description: Validate input data
    depends_on_step: initialize_data
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: process_data
    description: Process the data (fails once)
    depends_on_step: validate_input
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    default_retryable: true
    default_retry_limit: 3
    handler_config: {failure_count: 1}
  - name: transform_results
    description: Transform processed results
    depends_on_step: process_data
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: validate_output
    description: Validate output data
    depends_on_step: transform_results
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    default_retry_limit: 1
    handler_config: {failure_count: 0}
  - name: finalize_workflow
    description: Finalize the workflow
    depends_on_step: validate_output
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    default_retryable: false
    handler_config: {failure_count: 0}
$y$) AS linear_id \gset

SELECT namespace, name, version, description, step_count, steps
  FROM tasker.templates WHERE named_task_id = :linear_id;
SELECT * FROM yaml_test.steps('yaml_test', 'linear_workflow_task');
SELECT * FROM yaml_test.edges('yaml_test', 'linear_workflow_task');
SELECT context_schema FROM tasker.named_tasks WHERE named_task_id = :linear_id;

-- Diamond: one root, two branches of two, a join and a tail; lists of
-- parents in depends_on_steps, block and flow style.  One branch times
-- out (another handler class, so another queue); the tail names a SQL
-- handler, which runs in the database: handler wins over handler_class.
SELECT tasker.register_template_yaml($y$
name: diamond_workflow_task
namespace_name: yaml_test
version: 1.0.0
task_handler_class: DiamondWorkflowTask
description: "reference shape 'diamond' (7 steps)"
schema:
  type: object
  properties:
    workflow_type: {type: string}
    batch_id: {type: string}
step_templates:
  - name: start_workflow
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: branch_one_process
    depends_on_step: start_workflow
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 1}
  - name: branch_two_process
    depends_on_step: start_workflow
    handler_class: Tasker::Testing::NetworkTimeoutHandler
    handler_config: {timeout_count: 1}
    timeout: 30
  - name: branch_one_validate
    depends_on_step: branch_one_process
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: branch_two_validate
    depends_on_step: branch_two_process
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: merge_branches
    depends_on_steps:
      - branch_one_validate
      - branch_two_validate
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: end_workflow
    depends_on_steps: [merge_branches]
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler: yaml_test.noop
$y$) AS diamond_id \gset

SELECT namespace, name, step_count, steps FROM tasker.templates WHERE named_task_id = :diamond_id;
SELECT pos, name, queue, handler, timeout FROM yaml_test.steps('yaml_test', 'diamond_workflow_task');
SELECT * FROM yaml_test.edges('yaml_test', 'diamond_workflow_task');
SELECT tasker.template_graph('yaml_test', 'diamond_workflow_task');

-- Tree: a root, two branches, four leaves, a four-way join.  The step
-- settings shared by every step are written once, with an anchor and the
-- merge key; a step overrides what it sets itself.  (The shared settings
-- cannot sit under a key of their own: the format knows no such field.)
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: tree_workflow_task
namespace_name: yaml_test
version: 1.0.0
task_handler_class: TreeWorkflowTask
description: "reference shape 'tree' (8 steps)"
schema: {type: object, properties: {batch_id: {type: string}}}
x-step: &step
  handler_class: Tasker::Testing::ConfigurableFailureHandler
  default_retryable: true
  default_retry_limit: 3
  handler_config: &reliable {failure_count: 0}
step_templates:
  - {<<: *step, name: root_initialization}
  - {<<: *step, name: branch_a_setup, depends_on_step: root_initialization}
  - {<<: *step, name: branch_b_setup, depends_on_step: root_initialization,
     handler_config: {failure_count: 1}}
  - {<<: *step, name: branch_a_task_one, depends_on_step: branch_a_setup}
  - <<: *step
    name: branch_a_task_two
    depends_on_step: branch_a_setup
    handler_class: Tasker::Testing::NetworkTimeoutHandler
    handler_config: {timeout_count: 1}
  - {<<: *step, name: branch_b_task_one, depends_on_step: branch_b_setup}
  - <<: *step
    name: branch_b_task_two
    depends_on_step: branch_b_setup
    default_retry_limit: 5
    handler_config: {failure_count: 1}
  - <<: *step
    name: aggregate_results
    depends_on_steps: [branch_a_task_one, branch_a_task_two, branch_b_task_one, branch_b_task_two]
    handler_config: *reliable
$y$) $$);

-- The anchor sits on the first step instead.
SELECT tasker.register_template_yaml($y$
name: tree_workflow_task
namespace_name: yaml_test
version: 1.0.0
task_handler_class: TreeWorkflowTask
description: "reference shape 'tree' (8 steps)"
schema: {type: object, properties: {batch_id: {type: string}}}
step_templates:
  - &step
    name: root_initialization
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    default_retryable: true
    default_retry_limit: 3
    handler_config: &reliable {failure_count: 0}
  - {<<: *step, name: branch_a_setup, depends_on_step: root_initialization}
  - {<<: *step, name: branch_b_setup, depends_on_step: root_initialization,
     handler_config: {failure_count: 1}}
  - {<<: *step, name: branch_a_task_one, depends_on_step: branch_a_setup}
  - <<: *step
    name: branch_a_task_two
    depends_on_step: branch_a_setup
    handler_class: Tasker::Testing::NetworkTimeoutHandler
    handler_config: {timeout_count: 1}
  - {<<: *step, name: branch_b_task_one, depends_on_step: branch_b_setup}
  - <<: *step
    name: branch_b_task_two
    depends_on_step: branch_b_setup
    default_retry_limit: 5
    handler_config: {failure_count: 1}
  - <<: *step
    name: aggregate_results
    depends_on_steps: [branch_a_task_one, branch_a_task_two, branch_b_task_one, branch_b_task_two]
    handler_config: *reliable
$y$) AS tree_id \gset

SELECT namespace, name, step_count, steps FROM tasker.templates WHERE named_task_id = :tree_id;
SELECT pos, name, queue, retryable, max_attempts FROM yaml_test.steps('yaml_test', 'tree_workflow_task');
SELECT * FROM yaml_test.edges('yaml_test', 'tree_workflow_task');

-- Mixed: two roots, a join, a fan-out and a dangling leaf.  tasker's own
-- keys mix with the Rails ones: an explicit queue (which wins over
-- handler_class), skippable, a per-step dependent_system, and the
-- template's identity_strategy.
SELECT tasker.register_template_yaml($y$
name: mixed_workflow_task
namespace_name: yaml_test
version: 1.0.0
task_handler_class: MixedWorkflowTask
description: "reference shape 'mixed' (9 steps)"
identity_strategy: strict
default_dependent_system: yaml_test_system
schema:
  type: object
  required: [batch_id]
  properties:
    batch_id: {type: string}
step_templates:
  - name: init_auth
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    dependent_system: yaml_test_auth
  - name: init_config
    handler_class: Tasker::Testing::ConfigurableFailureHandler
  - name: validate_permissions
    depends_on_step: init_auth
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 1}
  - name: setup_environment
    depends_on_step: init_config
    handler_class: Tasker::Testing::NetworkTimeoutHandler
    handler_config: {timeout_count: 1}
  - name: begin_processing
    depends_on_steps: [validate_permissions, setup_environment]
    handler_class: Tasker::Testing::ConfigurableFailureHandler
  - name: process_critical_data
    depends_on_step: begin_processing
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    default_retry_limit: 4
    handler_config: {failure_count: 2}
  - name: process_optional_data
    depends_on_step: begin_processing
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    skippable: yes
  - name: cleanup_temp_files
    depends_on_step: setup_environment
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    queue: yaml_test_cleanup
  - name: finalize_and_report
    depends_on_steps: [process_critical_data, cleanup_temp_files]
    handler_class: Tasker::Testing::ConfigurableFailureHandler
$y$) AS mixed_id \gset

SELECT namespace, name, identity_strategy, step_count, steps FROM tasker.templates WHERE named_task_id = :mixed_id;
SELECT pos, name, queue, max_attempts, skippable, dependent_system FROM yaml_test.steps('yaml_test', 'mixed_workflow_task');
SELECT * FROM yaml_test.edges('yaml_test', 'mixed_workflow_task');
SELECT tasker.template_graph('yaml_test', 'mixed_workflow_task', format => 'dot');

--------------------------------------------------------------------------
-- What the template JSON has no place for is kept beside it.
--------------------------------------------------------------------------

-- The task handler class, the template-level handler_config, the parsed
-- document and the YAML source, one row per YAML template...
SELECT t.name, y.task_handler_class, y.handler_config,
       y.document ->> 'task_handler_class' = y.task_handler_class AS in_document,
       y.source LIKE '%step_templates:%' AS source_kept
  FROM tasker.yaml_templates y JOIN tasker.named_tasks t USING (named_task_id)
 WHERE y.named_task_id IN (:linear_id, :diamond_id, :tree_id, :mixed_id)
 ORDER BY y.named_task_id;

-- ... and each step's handler_class and handler_config (steps with
-- neither have no row).
SELECT s.name, y.handler_class, y.handler_config
  FROM tasker.yaml_step_handlers y JOIN tasker.named_steps s USING (named_step_id)
 WHERE y.named_task_id = :mixed_id
 ORDER BY s.position;

-- An external worker that claimed a step reads them with step_handler.
-- The schema still checks the context.
SELECT tasker.create_task('yaml_test', 'linear_workflow_task',
                          context => '{"workflow_type": "linear", "batch_id": "b-1"}') AS task_id \gset
SELECT count(*) AS claimed FROM tasker.claim_steps('yaml_test', 'yaml-worker');
SELECT step_name, attempt, (tasker.step_handler(step_id)).*
  FROM tasker.claim_steps('tasker.testing.configurable_failure_handler', 'yaml-worker', 10);
SELECT * FROM tasker.step_handler(
    (SELECT workflow_step_id FROM tasker.workflow_steps WHERE task_id = :task_id AND name = 'process_data'));
CALL expect_error($$
    SELECT tasker.create_task('yaml_test', 'linear_workflow_task', context => '{"batch_id": 7}') $$);
SELECT tasker.cancel_task(:task_id) AS cancelled_steps;

--------------------------------------------------------------------------
-- Registering again.
--------------------------------------------------------------------------

-- The same document returns the same id, however it is written: comments,
-- flow or block style, key order and quoting do not matter.
SELECT tasker.register_template_yaml($y$
# the linear shape again, written differently
{namespace_name: yaml_test, name: "linear_workflow_task", version: "1.0.0",
 description: "reference shape 'linear' (6 steps)", task_handler_class: LinearWorkflowTask,
 default_dependent_system: yaml_test_system,
 named_steps: [initialize_data, validate_input, process_data, transform_results,
               validate_output, finalize_workflow],
 schema: {type: object, properties: {workflow_type: {type: string, default: linear},
                                     batch_id: {type: string}}},
 step_templates: [
   {name: initialize_data, description: Initialize workflow data,
    handler_class: "Tasker::Testing::ConfigurableFailureHandler", handler_config: {failure_count: 0}},
   {name: validate_input, description: Validate input data, depends_on_step: initialize_data,
    handler_class: Tasker::Testing::ConfigurableFailureHandler, handler_config: {failure_count: 0}},
   {name: process_data, description: Process the data (fails once), depends_on_step: validate_input,
    handler_class: Tasker::Testing::ConfigurableFailureHandler, default_retryable: true,
    default_retry_limit: 3, handler_config: {failure_count: 1}},
   {name: transform_results, description: Transform processed results, depends_on_step: process_data,
    handler_class: Tasker::Testing::ConfigurableFailureHandler, handler_config: {failure_count: 0}},
   {name: validate_output, description: Validate output data, depends_on_step: transform_results,
    handler_class: Tasker::Testing::ConfigurableFailureHandler, default_retry_limit: 1,
    handler_config: {failure_count: 0}},
   {name: finalize_workflow, description: Finalize the workflow, depends_on_step: validate_output,
    handler_class: Tasker::Testing::ConfigurableFailureHandler, default_retryable: false,
    handler_config: {failure_count: 0}}]}
$y$) = :linear_id AS same_id;

-- A registered version is immutable, the kept fields too: another
-- handler_config at the same version is refused (the template JSON alone
-- would be the same).
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: diamond_workflow_task
namespace_name: yaml_test
version: 1.0.0
task_handler_class: DiamondWorkflowTask
description: "reference shape 'diamond' (7 steps)"
schema:
  type: object
  properties:
    workflow_type: {type: string}
    batch_id: {type: string}
step_templates:
  - name: start_workflow
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 2}
  - name: branch_one_process
    depends_on_step: start_workflow
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 1}
  - name: branch_two_process
    depends_on_step: start_workflow
    handler_class: Tasker::Testing::NetworkTimeoutHandler
    handler_config: {timeout_count: 1}
    timeout: 30
  - name: branch_one_validate
    depends_on_step: branch_one_process
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: branch_two_validate
    depends_on_step: branch_two_process
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: merge_branches
    depends_on_steps:
      - branch_one_validate
      - branch_two_validate
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler_config: {failure_count: 0}
  - name: end_workflow
    depends_on_steps: [merge_branches]
    handler_class: Tasker::Testing::ConfigurableFailureHandler
    handler: yaml_test.noop
$y$) $$);

-- A template first registered as JSON can be registered again from the
-- same template in YAML: its handler classes are then kept.
SELECT tasker.register_template('{"namespace": "yaml_test", "name": "from_json", "version": "1.0.0",
    "steps": [{"name": "only", "queue": "yaml_test.step_handler.only"}]}') AS json_id \gset
SELECT tasker.register_template_yaml($y$
namespace_name: yaml_test
name: from_json
version: 1.0.0
step_templates:
  - name: only
    handler_class: YamlTest::StepHandler::Only
$y$) = :json_id AS same_id;
SELECT y.handler_class FROM tasker.yaml_step_handlers y WHERE y.named_task_id = :json_id;

--------------------------------------------------------------------------
-- handler_class -> queue.
--------------------------------------------------------------------------

-- Each "::" segment in snake_case (as ActiveSupport's underscore writes
-- it, acronyms included), joined with "."; a name longer than a queue may
-- be (50) loses leading segments until it fits.
SELECT s ->> 'name' AS step, s ->> 'queue' AS queue
  FROM jsonb_array_elements(tasker.yaml_template($y$
namespace_name: yaml_test_queues
name: queues
step_templates:
  - {name: short, handler_class: OrderProcessing::StepHandler::ValidateOrder}
  - {name: top_level, handler_class: "::Notify"}
  - {name: acronyms, handler_class: Api::HTTPClient::V2Handler}
  - {name: long, handler_class: BlogExamples::Post01::StepHandlers::ValidateCartHandler}
  - {name: none}
$y$) -> 'steps') s;

-- Two classes whose queues would be the same are refused, in one template
-- and across templates; an explicit queue settles it.
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
namespace_name: yaml_test_queues
name: clash
step_templates:
  - {name: one, handler_class: Api::HttpClient}
  - {name: two, handler_class: Api::HTTPClient}
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
namespace_name: yaml_test_queues
name: clash
step_templates:
  - {name: one, handler_class: YamlTest::StepHandler::ONLY}
$y$) $$);
SELECT tasker.register_template_yaml($y$
namespace_name: yaml_test_queues
name: clash
step_templates:
  - {name: one, handler_class: YamlTest::StepHandler::ONLY, queue: yaml_test_only_upper}
$y$) > 0 AS registered;

-- A class name tasker cannot make a queue of.
CALL expect_error($$ SELECT tasker.yaml_template($y$
name: bad_class
step_templates: [{name: one, handler_class: validate_order}]
$y$) $$);
CALL expect_error($$ SELECT tasker.yaml_template($y$
name: bad_class
step_templates: [{name: one, handler_class: Acme::AVeryLongHandlerClassNameThatIsLongerThanFiftyCharacters}]
$y$) $$);

--------------------------------------------------------------------------
-- YAML that does not parse: SQLSTATE 22P02 with libyaml's line and column
-- (line 1 is the line $y$ is on).
--------------------------------------------------------------------------
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: unclosed
step_templates:
  - {name: a, depends_on_steps: [b, c}
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: bad_indent
step_templates:
  - name: a
     description: indented too far
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: "unterminated
step_templates: []
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml(E'name: tab\n\tversion: 1.0.0') $$);

-- Valid YAML that is not one JSON document: a key written twice, an alias
-- to no anchor, a recursive alias, a sequence as a key, a tag with no JSON
-- meaning, infinity, two documents, aliases that expand 18 written values
-- to over twelve million.
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: twice
step_templates:
  - name: a
    depends_on_step: b
    depends_on_step: c
$y$) $$);
CALL expect_error($$ SELECT tasker.yaml_to_jsonb($y$
step_templates:
  - *first_step
$y$) $$);
CALL expect_error($$ SELECT tasker.yaml_to_jsonb('loop: &loop [1, *loop]') $$);
CALL expect_error($$ SELECT tasker.yaml_to_jsonb('? [a, b]
: pair') $$);
CALL expect_error($$ SELECT tasker.yaml_to_jsonb('handler: !ruby/class OrderHandler') $$);
CALL expect_error($$ SELECT tasker.yaml_to_jsonb('timeout: .inf') $$);
CALL expect_error($$ SELECT tasker.yaml_to_jsonb('--- {name: one}
--- {name: two}') $$);
CALL expect_error($$ SELECT tasker.yaml_to_jsonb($y$
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
$y$) $$);

--------------------------------------------------------------------------
-- YAML of the wrong shape: SQLSTATE 22023, naming the field.
--------------------------------------------------------------------------
CALL expect_error($$ SELECT tasker.register_template_yaml('') $$);
CALL expect_error($$ SELECT tasker.register_template_yaml('- name: a_list') $$);
CALL expect_error($$ SELECT tasker.register_template_yaml('just a string') $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: steps_as_mapping
namespace_name: yaml_test_never
step_templates:
  first: {name: a}
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: step_as_string
namespace_name: yaml_test_never
step_templates:
  - first
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: nameless_step
namespace_name: yaml_test_never
step_templates:
  - description: no name
$y$) $$);
-- (a typo in a field name is an error, never a silently lost dependency)
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: typo
namespace_name: yaml_test_never
step_templates:
  - name: a
  - name: b
    depends_on_stpe: a
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: typo
namespace: yaml_test_never
$y$) $$);
-- (an unquoted 1.0 is a float, not a version)
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: float_version
namespace_name: yaml_test_never
version: 1.0
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: bad_config
namespace_name: yaml_test_never
step_templates:
  - {name: a, handler_config: [failure_count, 1]}
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: bad_concurrent
namespace_name: yaml_test_never
concurrent: sometimes
$y$) $$);
-- named_steps must list exactly the step templates.
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: named_mismatch
namespace_name: yaml_test_never
named_steps: [a, b]
step_templates:
  - name: a
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: named_mismatch
namespace_name: yaml_test_never
named_steps: [a]
step_templates:
  - name: a
  - name: b
$y$) $$);

--------------------------------------------------------------------------
-- Well-formed YAML, bad template: register_template's own checks.
--------------------------------------------------------------------------
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: unknown_dependency
namespace_name: yaml_test_never
step_templates:
  - name: a
  - name: b
    depends_on_steps: [a, c]
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: cycle
namespace_name: yaml_test_never
step_templates:
  - {name: a, depends_on_step: c}
  - {name: b, depends_on_step: a}
  - {name: c, depends_on_step: b}
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: retry_limit_as_text
namespace_name: yaml_test_never
step_templates:
  - {name: a, default_retry_limit: "3"}
$y$) $$);
-- (a schema keyword tasker cannot enforce is refused, not dropped)
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: schema_minimum
namespace_name: yaml_test_never
schema:
  type: object
  properties:
    quantity: {type: integer, minimum: 1}
$y$) $$);
CALL expect_error($$ SELECT tasker.register_template_yaml($y$
name: missing_handler
namespace_name: yaml_test_never
step_templates:
  - {name: a, handler: yaml_test.no_such_function}
$y$) $$);

-- Nothing of a refused template was stored.
SELECT count(*) AS never_namespaces FROM tasker.namespaces WHERE name = 'yaml_test_never';
SELECT t.namespace, t.name, t.step_count
  FROM tasker.templates t WHERE t.namespace LIKE 'yaml_test%' ORDER BY t.namespace, t.name;
