--
-- templates: registering task templates with tasker.register_template(jsonb).
--
-- A template is a namespaced, versioned DAG of named steps.  This file shows
-- every field and its default, the Rails engine's spellings, SQL handlers
-- stored as regprocedure, what registering the same version again does, the
-- tasker.templates view and how create_task picks the newest version.
-- Everything here lives in namespace tpl_test (and one template named
-- tpl_test_defaults in the default namespace).  Bad input: template_errors.
--
\set SHOW_CONTEXT never

CREATE SCHEMA tpl_test;

-- A SQL handler is a function (jsonb) RETURNS jsonb.
CREATE FUNCTION tpl_test.charge_card(input jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT jsonb_build_object('charged', input -> 'context' -> 'amount') $$;

--------------------------------------------------------------------------
-- Every field.
--------------------------------------------------------------------------
SELECT tasker.register_template($${
  "namespace": "tpl_test",
  "name": "checkout",
  "version": "1.0.0",
  "description": "charge, then ship and mail a receipt",
  "identity_strategy": "strict",
  "context_schema": {"type": "object", "required": ["amount"],
                     "properties": {"amount": {"type": "number"}}},
  "default_dependent_system": "tpl_test_shop",
  "steps": [
    {"name": "charge", "description": "take the money", "handler": "tpl_test.charge_card",
     "timeout": 30, "dependent_system": "tpl_test_payments"},
    {"name": "ship", "depends_on": ["charge"], "queue": "tpl_test_warehouse",
     "retryable": true, "max_attempts": 5, "timeout": "2 hours"},
    {"name": "receipt", "depends_on": ["charge"], "retryable": false, "skippable": true}
  ]}$$) AS checkout_id \gset

-- The template row: semver kept as text and as numbers (for "newest"), the
-- context schema, the default dependent system, and the registering role
-- (SQL handlers run as that role).
SELECT t.name, t.version, t.version_order, t.description, t.identity_strategy,
       t.context_schema, d.name AS default_dependent_system,
       t.owner_role = current_user::regrole AS owned_by_me
  FROM tasker.named_tasks t
  LEFT JOIN tasker.dependent_systems d ON d.dependent_system_id = t.default_dependent_system_id
 WHERE t.named_task_id = :checkout_id;

-- The steps, in dependency order (position).  A step without a queue uses
-- the namespace's; a step without a dependent system uses the template's
-- default; timeout is a number of seconds or an interval.
SELECT s.position, s.name, s.description, d.name AS dependent_system, s.handler, s.queue,
       s.retryable, s.max_attempts, s.timeout, s.skippable
  FROM tasker.named_steps s
  LEFT JOIN tasker.dependent_systems d USING (dependent_system_id)
 WHERE s.named_task_id = :checkout_id
 ORDER BY s.position;

-- The template's DAG is stored too, not only its tasks' edges.
SELECT p.name AS parent, c.name AS child
  FROM tasker.named_step_edges e
  JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
  JOIN tasker.named_steps c ON c.named_step_id = e.to_named_step_id
 WHERE e.named_task_id = :checkout_id
 ORDER BY 1, 2;

-- The handler is stored as a regprocedure (a function's OID, resolved once
-- at registration), never as text to splice into SQL.
SELECT name, pg_typeof(handler) AS stored_as,
       handler = 'tpl_test.charge_card(jsonb)'::regprocedure AS is_charge_card
  FROM tasker.named_steps
 WHERE named_task_id = :checkout_id AND handler IS NOT NULL;

-- The stored body is the normalized template: the handler with its
-- signature, the timeout as an interval in one fixed style whatever the
-- session's IntervalStyle (here pg_regress's postgres_verbose).
SHOW IntervalStyle;
SELECT jsonb_pretty(template -> 'steps' -> 0) FROM tasker.named_tasks WHERE named_task_id = :checkout_id;

--------------------------------------------------------------------------
-- Defaults.
--------------------------------------------------------------------------
-- Only a name is required: namespace "default", version "0.1.0", identity
-- always_unique, no context schema; each step is external (no handler) on
-- the namespace's queue, retryable, 3 attempts, no timeout, not skippable.
-- The stored body is the normalized template, every default filled in.
SELECT tasker.register_template('{"name": "tpl_test_defaults", "steps": [{"name": "only"}]}')
    AS defaults_id \gset
SELECT jsonb_pretty(template) FROM tasker.named_tasks WHERE named_task_id = :defaults_id;
SELECT t.namespace, t.name, t.version, t.identity_strategy, t.step_count, t.steps,
       n.context_schema IS NULL AS no_context_schema
  FROM tasker.templates t JOIN tasker.named_tasks n USING (named_task_id)
 WHERE named_task_id = :defaults_id;
SELECT name, handler, queue, retryable, max_attempts, timeout, skippable, dependent_system_id
  FROM tasker.named_steps WHERE named_task_id = :defaults_id;

-- A template may have no steps at all (its tasks complete at once).
SELECT tasker.register_template('{"namespace": "tpl_test", "name": "nothing_to_do"}') > 0 AS registered;

--------------------------------------------------------------------------
-- The Rails engine's spellings.
--------------------------------------------------------------------------
-- depends_on_step (one name), depends_on_steps (a list), default_retryable
-- and default_retry_limit are accepted for depends_on, retryable and
-- max_attempts; depends_on may also be a single name.
SELECT tasker.register_template($${
  "namespace": "tpl_test", "name": "rails_spelling", "version": "1.0.0",
  "steps": [
    {"name": "fetch"},
    {"name": "parse", "depends_on_step": "fetch", "default_retryable": false},
    {"name": "store", "depends_on_steps": ["fetch", "parse"], "default_retry_limit": 7},
    {"name": "notify", "depends_on": "store"}
  ]}$$) AS rails_id \gset
SELECT s.name, s.retryable, s.max_attempts,
       (SELECT array_agg(p.name ORDER BY p.name)
          FROM tasker.named_step_edges e
          JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
         WHERE e.to_named_step_id = s.named_step_id) AS depends_on
  FROM tasker.named_steps s
 WHERE s.named_task_id = :rails_id
 ORDER BY s.position;

-- They are only spellings: the same template written with depends_on,
-- retryable and max_attempts (and its defaults spelled out, its keys in
-- another order) is the same body, so registering it returns the same id.
SELECT tasker.register_template($${
  "steps": [
    {"name": "fetch", "queue": "tpl_test", "max_attempts": 3},
    {"name": "parse", "depends_on": ["fetch"], "retryable": false},
    {"name": "store", "depends_on": ["parse", "fetch"], "max_attempts": 7},
    {"name": "notify", "depends_on": ["store"], "skippable": false}
  ],
  "version": "1.0.0", "name": "rails_spelling", "namespace": "tpl_test",
  "identity_strategy": "always_unique"}$$) = :rails_id AS same_id;

--------------------------------------------------------------------------
-- Registering again, and versions.
--------------------------------------------------------------------------
-- The same body again returns the same id and adds nothing: registration is
-- idempotent, so deploy scripts may register on every start.
SELECT count(*) AS templates_before FROM tasker.templates
 WHERE namespace = 'tpl_test' AND name = 'checkout';
SELECT tasker.register_template($${
  "namespace": "tpl_test",
  "name": "checkout",
  "version": "1.0.0",
  "description": "charge, then ship and mail a receipt",
  "identity_strategy": "strict",
  "context_schema": {"type": "object", "required": ["amount"],
                     "properties": {"amount": {"type": "number"}}},
  "default_dependent_system": "tpl_test_shop",
  "steps": [
    {"name": "charge", "description": "take the money", "handler": "tpl_test.charge_card(jsonb)",
     "timeout": "30 seconds", "dependent_system": "tpl_test_payments"},
    {"name": "ship", "depends_on": ["charge"], "queue": "tpl_test_warehouse",
     "retryable": true, "max_attempts": 5, "timeout": 7200},
    {"name": "receipt", "depends_on": ["charge"], "retryable": false, "skippable": true}
  ]}$$) = :checkout_id AS same_id;
SELECT count(*) AS templates_after FROM tasker.templates
 WHERE namespace = 'tpl_test' AND name = 'checkout';

-- A registered version is immutable: a different body under the same
-- namespace, name and version is refused (here: one more step).
CALL expect_error($$
SELECT tasker.register_template('{
  "namespace": "tpl_test", "name": "rails_spelling", "version": "1.0.0",
  "steps": [{"name": "fetch"}, {"name": "parse", "depends_on": "fetch", "retryable": false},
            {"name": "store", "depends_on": ["fetch", "parse"], "max_attempts": 7},
            {"name": "notify", "depends_on": "store"}, {"name": "audit"}]}')
$$);

-- The change is a new version: a new row beside the old one.
SELECT tasker.register_template($${
  "namespace": "tpl_test", "name": "rails_spelling", "version": "1.1.0",
  "steps": [{"name": "fetch"}, {"name": "parse", "depends_on": "fetch", "retryable": false},
            {"name": "store", "depends_on": ["fetch", "parse"], "max_attempts": 7},
            {"name": "notify", "depends_on": "store"}, {"name": "audit"}]}$$) <> :rails_id AS new_row;

-- tasker.templates lists every registered version with its steps in order.
SELECT namespace, name, version, description, identity_strategy, step_count, steps,
       owner_role = current_user::regrole AS owned_by_me
  FROM tasker.templates
 WHERE namespace = 'tpl_test'
 ORDER BY name, version;

--------------------------------------------------------------------------
-- Which version create_task uses.
--------------------------------------------------------------------------
-- Versions are ordered as semver numbers, not as text: 1.10.0 is newer than
-- 1.9.0.  Registration order does not matter.
SELECT tasker.register_template(format('{"namespace": "tpl_test", "name": "versioned", "version": "%s",
                                         "steps": [{"name": "step"}]}', v)::jsonb) > 0 AS registered
  FROM unnest(ARRAY['1.9.0', '1.10.0', '1.2.0', '0.99.99']) AS v;

-- Without a version, create_task (and find_template) use the newest.
SELECT tasker.create_task('tpl_test', 'versioned') AS task_id \gset
SELECT t.version
  FROM tasker.tasks k JOIN tasker.named_tasks t USING (named_task_id) WHERE k.task_id = :task_id;
SELECT version FROM tasker.named_tasks
 WHERE named_task_id = tasker.find_template('tpl_test', 'versioned');

-- A version named explicitly is used as is.
SELECT tasker.create_task('tpl_test', 'versioned', '1.9.0') AS task_id \gset
SELECT t.version
  FROM tasker.tasks k JOIN tasker.named_tasks t USING (named_task_id) WHERE k.task_id = :task_id;

-- A new, newer version is picked up by the next create_task.
SELECT tasker.register_template('{"namespace": "tpl_test", "name": "versioned", "version": "2.0.0",
                                  "steps": [{"name": "step"}, {"name": "more", "depends_on": "step"}]}') > 0
       AS registered;
SELECT tasker.create_task('tpl_test', 'versioned') AS task_id \gset
SELECT t.version, (SELECT array_agg(s.name ORDER BY s.workflow_step_id)
                     FROM tasker.workflow_steps s WHERE s.task_id = k.task_id) AS steps
  FROM tasker.tasks k JOIN tasker.named_tasks t USING (named_task_id) WHERE k.task_id = :task_id;

-- The tasks of each version keep the steps of their own version.
SELECT t.version, count(*) AS tasks, min(s.steps) AS steps
  FROM tasker.tasks k JOIN tasker.named_tasks t USING (named_task_id)
  CROSS JOIN LATERAL (SELECT count(*) AS steps FROM tasker.workflow_steps s
                       WHERE s.task_id = k.task_id) s
 WHERE t.named_task_id IN (SELECT named_task_id FROM tasker.templates
                            WHERE namespace = 'tpl_test' AND name = 'versioned')
 GROUP BY t.version, t.version_order ORDER BY t.version_order;

-- An unknown name or version is an error (more in tasks and template_errors).
CALL expect_error($$ SELECT tasker.create_task('tpl_test', 'versioned', '1.3.0') $$);
