# 054_group_commit.pl — executors commit the steps of a claimed batch
# together (tasker.executor_commit_window), siblings of one task included,
# releasing children and finalizing tasks once per group just before the
# commit; a grouped step that fails keeps the group's work.
#
# Every task has two independent SQL steps, a and b.  The handler records
# the top-level transaction id it ran in.  Some tasks' handlers fail when
# they find an earlier step in their transaction (an ordinary error: a
# failed attempt is recorded, the group commits); others raise
# deadlock_detected in that case, which the executor must treat as the
# group's doing: the step runs again alone, at the same attempt, and no
# failure is recorded.  Non-transactional sequences count what the
# handlers raised.  With the window at 0 every step commits on its own.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tasks = 60;

my $node = PostgreSQL::Test::Cluster->new('group_commit');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.enabled = off
tasker.poll_interval = 100ms
tasker.executor_batch_size = 8
tasker.executor_commit_window = 1s
tasker.max_executors = 2
tasker.min_concurrent_steps = 2
tasker.max_concurrent_steps = 2
tasker.backoff_base = 0
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA grp;
CREATE TABLE grp.runs (task_id bigint, step text, attempt integer, xid xid8, round integer);
CREATE SEQUENCE grp.raised_failures;
CREATE SEQUENCE grp.raised_deadlocks;
CREATE FUNCTION grp.work(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    grouped boolean := EXISTS (SELECT FROM grp.runs WHERE xid = pg_current_xact_id());
BEGIN
    IF grouped AND input -> 'context' ->> 'inject' = 'failure' AND (input ->> 'attempt')::int = 1 THEN
        PERFORM nextval('grp.raised_failures');
        RAISE EXCEPTION 'boom';
    END IF;
    IF grouped AND input -> 'context' ->> 'inject' = 'deadlock' THEN
        PERFORM nextval('grp.raised_deadlocks');
        RAISE EXCEPTION 'pretend deadlock' USING ERRCODE = 'deadlock_detected';
    END IF;
    INSERT INTO grp.runs VALUES ((input ->> 'task_id')::bigint, input ->> 'step_name',
                                 (input ->> 'attempt')::integer, pg_current_xact_id(),
                                 (input -> 'context' ->> 'round')::integer);
    RETURN '{}';
END $$;
SELECT tasker.register_template('{
  "namespace": "grp", "name": "pair", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "grp.work(jsonb)", "max_attempts": 3},
    {"name": "b", "handler": "grp.work(jsonb)", "max_attempts": 3}
  ]}');
});

sub run_round
{
	my ($round) = @_;
	$node->safe_psql('postgres', qq{
	SELECT tasker.create_task('grp', 'pair', context => jsonb_build_object(
	           'round', $round,
	           'inject', CASE WHEN i % 3 = 1 THEN 'failure' WHEN i % 3 = 2 THEN 'deadlock' END))
	  FROM generate_series(1, $tasks) i});
	$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()');
	ok( $node->poll_query_until('postgres', qq{
		SELECT count(*) = 0 FROM tasker.tasks
		WHERE current_state <> 'complete' AND (context ->> 'round')::int = $round}),
		"round $round: every task completes");
	$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = off; SELECT pg_reload_conf()');
	ok($node->poll_query_until('postgres', 'SHOW tasker.enabled', 'off'), "round $round: dispatch off");
}

# Round 1: a window of a second, batches of 8.
run_round(1);
is( $node->safe_psql('postgres', q{
	SELECT count(*) || ' runs, ' || count(DISTINCT (task_id, step)) || ' steps'
	FROM grp.runs WHERE round = 1}),
	(2 * $tasks) . ' runs, ' . (2 * $tasks) . ' steps', 'round 1: every step ran once to completion');
my $shared = $node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT xid FROM grp.runs WHERE round = 1 GROUP BY xid HAVING count(*) > 1) g});
cmp_ok($shared, '>', 0, "round 1: steps committed together ($shared transactions ran several)");
my $siblings = $node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT xid, task_id FROM grp.runs WHERE round = 1
	                      GROUP BY xid, task_id HAVING count(*) > 1) g});
cmp_ok($siblings, '>', 0, "round 1: siblings claimed together ran in one transaction ($siblings tasks)");

my $failures = $node->safe_psql('postgres', q{SELECT last_value FROM grp.raised_failures});
cmp_ok($failures, '>', 1, "round 1: grouped steps failed ($failures)");
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_step_transitions
	WHERE to_state = 'waiting_for_retry' AND metadata -> 'error' ->> 'message' = 'boom'}),
	$failures, 'round 1: each failure in a group was recorded once, as a failed attempt');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM grp.runs r JOIN tasker.tasks t USING (task_id)
	WHERE t.context ->> 'inject' = 'failure' AND r.round = 1 AND r.attempt = 2}),
	$failures, 'round 1: the failed steps completed at their second attempt');

my $deadlocks = $node->safe_psql('postgres', q{SELECT last_value FROM grp.raised_deadlocks});
cmp_ok($deadlocks, '>', 1, "round 1: grouped steps met a deadlock ($deadlocks)");
is( $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE s.attempts <> 1) || ' retried, '
	       || count(*) FILTER (WHERE EXISTS (SELECT FROM tasker.workflow_step_transitions tr
	                                          WHERE tr.workflow_step_id = s.workflow_step_id
	                                            AND tr.to_state NOT IN ('pending', 'in_progress', 'complete')))
	       || ' with a failure'
	FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
	WHERE t.context ->> 'inject' = 'deadlock'}),
	'0 retried, 0 with a failure',
	'round 1: a deadlock in a group reruns the step alone, at the same attempt, with no failure recorded');
# Round 2: the window at 0, every step in a transaction of its own.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET tasker.executor_commit_window = 0;
	SELECT setval('grp.raised_failures', 1, false), setval('grp.raised_deadlocks', 1, false)});
run_round(2);
is( $node->safe_psql('postgres', q{
	SELECT count(*) || ' runs, ' || count(DISTINCT xid) || ' transactions' FROM grp.runs WHERE round = 2}),
	(2 * $tasks) . ' runs, ' . (2 * $tasks) . ' transactions',
	'round 2: with the window at 0, every step commits on its own');
is( $node->safe_psql('postgres', q{
	SELECT (SELECT is_called FROM grp.raised_failures) OR (SELECT is_called FROM grp.raised_deadlocks)}),
	'f', 'round 2: no handler found itself grouped');
# Round 3: slow steps (30 ms, three times the window) are claimed one at
# a time once an executor has measured them; fast ones by the batch.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET tasker.executor_commit_window = '10ms';
	CREATE FUNCTION grp.slow(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS 'BEGIN PERFORM pg_sleep(0.03); RETURN ''{}''; END';
	SELECT tasker.register_template('{"namespace": "grp", "name": "slow", "version": "1.0.0",
	                                  "steps": [{"name": "s", "handler": "grp.slow(jsonb)"}]}');
	SELECT tasker.create_task('grp', 'slow', context => '{"round": 3}') FROM generate_series(1, 30);
	ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()});
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM tasker.tasks WHERE current_state <> 'complete' AND (context ->> 'round')::int = 3}),
	'round 3: every slow task completes');
# a claim: the steps one executor claimed in one transaction (same worker, same now())
my $claims = q{
	SELECT s.claimed_by, s.last_attempted_at, count(*) AS size,
	       rank() OVER (PARTITION BY s.claimed_by ORDER BY s.last_attempted_at) AS nth
	FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
	WHERE (t.context ->> 'round')::int = %d
	GROUP BY s.claimed_by, s.last_attempted_at};
is( $node->safe_psql('postgres', sprintf(
		"SELECT coalesce(max(size), 1) FROM (%s) c WHERE nth > 1", sprintf($claims, 3))),
	'1', 'round 3: after its first claim an executor claims slow steps one at a time');
cmp_ok( $node->safe_psql('postgres', sprintf(
		"SELECT max(size) FROM (%s) c", sprintf($claims, 1))),
	'>', 1, 'round 1: fast steps were claimed several at a time');

# Round 4: fan-in.  Three roots and a child of all three, grouped: each
# group releases the child once for all its completed parents, the child
# runs once, after every parent, and the task completes.  Half the tasks
# fail a root once (a failure recorded in a group whose earlier steps of
# the same task are settled first).
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET tasker.executor_commit_window = '1s';
	ALTER SYSTEM SET tasker.enabled = off; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', 'SHOW tasker.enabled', 'off'), 'round 4: dispatch off');
$node->safe_psql('postgres', qq{
	CREATE SEQUENCE grp.run_order;
	ALTER TABLE grp.runs ADD COLUMN seq bigint DEFAULT nextval('grp.run_order');
	CREATE FUNCTION grp.fan(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
	BEGIN
	    IF input ->> 'step_name' = 'r2' AND (input -> 'context' ->> 'flaky')::boolean
	       AND (input ->> 'attempt')::int = 1 THEN
	        RAISE EXCEPTION 'flaky root';
	    END IF;
	    INSERT INTO grp.runs (task_id, step, attempt, xid, round)
	    VALUES ((input ->> 'task_id')::bigint, input ->> 'step_name', (input ->> 'attempt')::integer,
	            pg_current_xact_id(), 4);
	    RETURN jsonb_build_object('from', input ->> 'step_name');
	END \$\$;
	SELECT tasker.register_template('{"namespace": "grp", "name": "fan", "version": "1.0.0",
	  "steps": [{"name": "r1", "handler": "grp.fan(jsonb)"},
	            {"name": "r2", "handler": "grp.fan(jsonb)"},
	            {"name": "r3", "handler": "grp.fan(jsonb)"},
	            {"name": "child", "handler": "grp.fan(jsonb)", "depends_on": ["r1", "r2", "r3"]}]}');
	SELECT tasker.create_task('grp', 'fan', context => jsonb_build_object('round', 4, 'flaky', i % 2 = 0))
	  FROM generate_series(1, $tasks) i;
	ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()});
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM tasker.tasks WHERE current_state <> 'complete' AND (context ->> 'round')::int = 4}),
	'round 4: every fan-in task completes');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE step = 'child') || ' children, '
	       || count(*) FILTER (WHERE step = 'child' AND seq < (SELECT max(p.seq) FROM grp.runs p
	                                                      WHERE p.task_id = r.task_id AND p.step <> 'child'))
	       || ' before a parent'
	FROM grp.runs r WHERE round = 4}),
	"$tasks children, 0 before a parent", 'round 4: each child ran once, after its three parents');
cmp_ok( $node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT xid, task_id FROM grp.runs WHERE round = 4 AND step <> 'child'
	                      GROUP BY xid, task_id HAVING count(*) > 1) g}),
	'>', 0, 'round 4: parents of one child completed in one group');
note "round 4 failures, by step and message:\n" . $node->safe_psql('postgres', q{
	SELECT f || ': ' || count(*) FROM (
	    SELECT s.name || ' ' || coalesce(tr.metadata -> 'error' ->> 'message', tr.metadata::text) AS f
	    FROM tasker.workflow_step_transitions tr JOIN tasker.tasks t USING (task_id)
	    JOIN tasker.workflow_steps s USING (task_id, workflow_step_id)
	    WHERE (t.context ->> 'round')::int = 4 AND tr.to_state = 'waiting_for_retry') x
	GROUP BY f ORDER BY f});
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_step_transitions tr JOIN tasker.tasks t USING (task_id)
	WHERE (t.context ->> 'round')::int = 4 AND tr.to_state = 'waiting_for_retry'}),
	$tasks / 2, 'round 4: each flaky root failed once, recorded once');

# Round 5: the same fan-in, nothing failing.  A group locks its steps
# before their handlers run and records their completions in the
# transaction that holds the locks: no row gets a MultiXact (recording
# them in a subtransaction would give every completed step one).
$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = off; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', 'SHOW tasker.enabled', 'off'), 'round 5: dispatch off');
$node->safe_psql('postgres', qq{
	SELECT tasker.create_task('grp', 'fan', context => jsonb_build_object('round', 5, 'flaky', false))
	  FROM generate_series(1, $tasks) i});
my $multixacts_query = q{CHECKPOINT; SELECT next_multixact_id FROM pg_control_checkpoint()};
my $multixacts_before = $node->safe_psql('postgres', $multixacts_query);
$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()');
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM tasker.tasks WHERE current_state <> 'complete' AND (context ->> 'round')::int = 5}),
	'round 5: every fan-in task completes');
my $multixacts = $node->safe_psql('postgres', $multixacts_query) - $multixacts_before;
cmp_ok($multixacts, '<', $tasks * 4 / 10,
	"round 5: completing " . ($tasks * 4) . " steps in groups created $multixacts MultiXacts");

# Round 6: a handler that moves a step itself, through tasker's API.  Step x
# completes its sibling y (claimed with it, in the same group) before y's
# handler runs; z depends on both.  A group learns of such a move only from
# the handler: x's work is undone and x runs alone, so that y is released
# once (z's parent count never goes below 0) and every task completes.
$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = off; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', 'SHOW tasker.enabled', 'off'), 'round 6: dispatch off');
$node->safe_psql('postgres', qq{
	CREATE FUNCTION grp.meddle(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
	BEGIN
	    IF input ->> 'step_name' = 'x' THEN
	        PERFORM tasker.complete_step(s.workflow_step_id, s.attempts, '{"by": "x"}')
	           FROM tasker.workflow_steps s
	          WHERE s.task_id = (input ->> 'task_id')::bigint AND s.name = 'y'
	            AND s.current_state = 'in_progress';
	    END IF;
	    INSERT INTO grp.runs (task_id, step, attempt, xid, round)
	    VALUES ((input ->> 'task_id')::bigint, input ->> 'step_name', (input ->> 'attempt')::integer,
	            pg_current_xact_id(), 6);
	    RETURN jsonb_build_object('from', input ->> 'step_name');
	END \$\$;
	SELECT tasker.register_template('{"namespace": "grp", "name": "meddle", "version": "1.0.0",
	  "steps": [{"name": "y", "handler": "grp.meddle(jsonb)"},
	            {"name": "x", "handler": "grp.meddle(jsonb)"},
	            {"name": "z", "handler": "grp.meddle(jsonb)", "depends_on": ["x", "y"]}]}');
	SELECT tasker.create_task('grp', 'meddle', context => '{"round": 6}') FROM generate_series(1, $tasks);
	ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()});
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM tasker.tasks WHERE current_state <> 'complete' AND (context ->> 'round')::int = 6}),
	'round 6: every task whose handler completed a sibling completes');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE step = 'z') || ' z, ' || count(*) FILTER (WHERE step = 'x') || ' x'
	FROM grp.runs WHERE round = 6}),
	"$tasks z, $tasks x", 'round 6: x and z each ran once per task (a handed-back run left nothing)');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
	WHERE (t.context ->> 'round')::int = 6 AND (s.current_state <> 'complete' OR s.pending_parents <> 0)}),
	'0', 'round 6: every step complete, every parent count at 0');

is($node->safe_psql('postgres', 'SELECT count(*) FROM tasker.check_invariants()'),
	'0', 'the invariants hold');

$node->stop;
done_testing();
