--
-- identity: when create_task makes a new task and when it returns one that
-- exists.
--
-- A template's identity_strategy decides: always_unique (the default) makes
-- a new task every time; strict makes one task per distinct request (a hash
-- of context, initiator, source_system, reason, tags and bypass_steps);
-- caller_provided requires an idempotency_key.  A key, when given, always
-- decides, whatever the strategy.  A duplicate returns the existing task's
-- id and writes nothing.  Identities are per template version.
-- Namespace: ident_test.
--
\set SHOW_CONTEXT never

CREATE SCHEMA ident_test;

-- row_counts counts what the tasks of this file's templates hold, to show
-- that a duplicate adds nothing.
CREATE FUNCTION ident_test.row_counts(OUT tasks bigint, OUT steps bigint, OUT edges bigint,
                                      OUT step_transitions bigint)
    LANGUAGE sql AS $$
    WITH mine AS (
        SELECT k.task_id FROM tasker.tasks k
          JOIN tasker.named_tasks t USING (named_task_id)
          JOIN tasker.namespaces n USING (namespace_id)
         WHERE n.name = 'ident_test')
    SELECT (SELECT count(*) FROM mine),
           (SELECT count(*) FROM tasker.workflow_steps WHERE task_id IN (SELECT task_id FROM mine)),
           (SELECT count(*) FROM tasker.workflow_step_edges WHERE task_id IN (SELECT task_id FROM mine)),
           (SELECT count(*) FROM tasker.workflow_step_transitions WHERE task_id IN (SELECT task_id FROM mine))
$$;

-- Three templates with the same two steps, one per strategy.
SELECT tasker.register_template(format('{"namespace": "ident_test", "name": "%s",
         "identity_strategy": "%s", "steps": [{"name": "a"}, {"name": "b", "depends_on": "a"}]}',
         strategy, strategy)::jsonb) > 0 AS registered
  FROM unnest(ARRAY['always_unique', 'strict', 'caller_provided']) AS strategy;

--------------------------------------------------------------------------
-- always_unique
--------------------------------------------------------------------------
-- The same request twice makes two tasks.
SELECT tasker.create_task('ident_test', 'always_unique', context => '{"order_id": 1}') AS first_task \gset
SELECT tasker.create_task('ident_test', 'always_unique', context => '{"order_id": 1}') <> :first_task
       AS new_task;

-- Unless it carries an idempotency_key: then the second create_task returns
-- the first task, and nothing is written, neither a task nor its steps,
-- edges or transitions.
SELECT * FROM ident_test.row_counts();
SELECT tasker.create_task('ident_test', 'always_unique', context => '{"order_id": 2}',
                          idempotency_key => 'order-2') AS keyed_task \gset
SELECT * FROM ident_test.row_counts();
SELECT tasker.create_task('ident_test', 'always_unique', context => '{"order_id": 2}',
                          idempotency_key => 'order-2') = :keyed_task AS same_task;
-- The key alone decides: another context under the same key is the same task.
SELECT tasker.create_task('ident_test', 'always_unique', context => '{"order_id": 999}',
                          idempotency_key => 'order-2') = :keyed_task AS same_task;
SELECT * FROM ident_test.row_counts();
SELECT context FROM tasker.tasks WHERE task_id = :keyed_task;

-- Another key is another task.
SELECT tasker.create_task('ident_test', 'always_unique', context => '{"order_id": 2}',
                          idempotency_key => 'order-2-again') <> :keyed_task AS new_task;

--------------------------------------------------------------------------
-- strict
--------------------------------------------------------------------------
-- One task per distinct request.  The request is the context (as JSON, so
-- the order of its keys does not matter), initiator, source_system, reason,
-- tags (in any order) and bypass_steps; priority is not part of it.
SELECT tasker.create_task('ident_test', 'strict', context => '{"order_id": 3, "rush": true}',
                          initiator => 'alice', source_system => 'web', reason => 'order',
                          tags => '{shop,eu}') AS strict_task \gset
SELECT split_part(identity_hash, ':', 1) AS identity_kind FROM tasker.tasks WHERE task_id = :strict_task;

SELECT * FROM ident_test.row_counts() \gset before_
SELECT request,
       tasker.create_task('ident_test', 'strict', context => c, initiator => i, source_system => s,
                          reason => r, tags => t, bypass_steps => b, priority => p) = :strict_task
       AS same_task
  FROM (VALUES
    ('the same request',            '{"order_id": 3, "rush": true}'::jsonb, 'alice', 'web', 'order', '{shop,eu}'::text[], '{}'::text[], 0),
    ('keys and tags reordered',     '{"rush": true, "order_id": 3}', 'alice', 'web', 'order', '{eu,shop}', '{}', 0),
    ('another priority',            '{"order_id": 3, "rush": true}', 'alice', 'web', 'order', '{shop,eu}', '{}', 9),
    ('another context',             '{"order_id": 3, "rush": false}', 'alice', 'web', 'order', '{shop,eu}', '{}', 0),
    ('another initiator',           '{"order_id": 3, "rush": true}', 'bob', 'web', 'order', '{shop,eu}', '{}', 0),
    ('another source_system',       '{"order_id": 3, "rush": true}', 'alice', 'api', 'order', '{shop,eu}', '{}', 0),
    ('another reason',              '{"order_id": 3, "rush": true}', 'alice', 'web', 'reorder', '{shop,eu}', '{}', 0),
    ('another tag',                 '{"order_id": 3, "rush": true}', 'alice', 'web', 'order', '{shop,eu,vip}', '{}', 0),
    ('a bypassed step',             '{"order_id": 3, "rush": true}', 'alice', 'web', 'order', '{shop,eu}', '{a}', 0)
  ) AS v(request, c, i, s, r, t, b, p);
-- Six new requests made six tasks, with their steps and edges (and the one
-- with a bypassed step, its transition).
SELECT tasks - :before_tasks AS new_tasks, steps - :before_steps AS new_steps,
       edges - :before_edges AS new_edges,
       step_transitions - :before_step_transitions AS new_step_transitions
  FROM ident_test.row_counts();

-- An idempotency_key overrides the hash: the same key is the same task even
-- for another request.
SELECT tasker.create_task('ident_test', 'strict', context => '{"order_id": 4}',
                          idempotency_key => 'order-4') AS strict_keyed \gset
SELECT tasker.create_task('ident_test', 'strict', context => '{"order_id": 5}',
                          idempotency_key => 'order-4') = :strict_keyed AS same_task;
SELECT split_part(identity_hash, ':', 1) AS identity_kind FROM tasker.tasks WHERE task_id = :strict_keyed;

--------------------------------------------------------------------------
-- caller_provided
--------------------------------------------------------------------------
-- The caller must name the request: no key, no task.
CALL expect_error($$ SELECT tasker.create_task('ident_test', 'caller_provided',
                                                          context => '{"order_id": 6}') $$);
SELECT tasker.create_task('ident_test', 'caller_provided', context => '{"order_id": 6}',
                          idempotency_key => 'order-6') AS caller_task \gset
SELECT * FROM ident_test.row_counts() \gset before_
SELECT tasker.create_task('ident_test', 'caller_provided', context => '{"order_id": 6}',
                          idempotency_key => 'order-6') = :caller_task AS same_task;
SELECT tasker.create_task('ident_test', 'caller_provided', context => '{"order_id": 6}',
                          idempotency_key => 'order-6b') <> :caller_task AS new_task;
SELECT tasks - :before_tasks AS new_tasks FROM ident_test.row_counts();

--------------------------------------------------------------------------
-- Scope
--------------------------------------------------------------------------
-- A key belongs to one template version: the same key under another
-- template, or another version of the same one, is another task.
SELECT tasker.create_task('ident_test', 'always_unique', idempotency_key => 'order-6')
       <> :caller_task AS new_task;
SELECT tasker.register_template('{"namespace": "ident_test", "name": "caller_provided", "version": "2.0.0",
         "identity_strategy": "caller_provided", "steps": [{"name": "a"}]}') > 0 AS registered;
SELECT tasker.create_task('ident_test', 'caller_provided', idempotency_key => 'order-6')
       <> :caller_task AS new_task;
SELECT tasker.create_task('ident_test', 'caller_provided', '0.1.0', idempotency_key => 'order-6')
       = :caller_task AS same_task;

-- A duplicate returns the existing task whatever has become of it: here a
-- cancelled one (the key stays taken).
SELECT tasker.cancel_task(:caller_task, 'changed my mind') AS cancelled_steps;
SELECT tasker.create_task('ident_test', 'caller_provided', '0.1.0', idempotency_key => 'order-6')
       = :caller_task AS same_task;
SELECT current_state FROM tasker.tasks WHERE task_id = :caller_task;
