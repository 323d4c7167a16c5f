# 022_restart_pending.pl — work that is pending when the server stops gets
# done after it starts again.
#
# 1. Tasks created while tasker.enabled = off (so none of their steps has
#    run) are done after a clean restart with dispatch on.
# 2. Steps that failed and wait for a retry when the server crashes
#    (pg_ctl stop -m immediate) run after recovery, and so do their
#    children.
# Each step's row exists once: the one of the attempt that completed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tasks = 10;

my $node = PostgreSQL::Test::Cluster->new('restart_pending');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
tasker.enabled = off
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA pend;
CREATE TABLE pend.writes (task_id bigint, step text, attempt integer, parents_done boolean);
CREATE TABLE pend.go ();
-- Writes a row, noting whether the steps before it (a < b < c) were
-- complete when it ran; with "flaky" in the context, step a fails (its row
-- rolls back with it) and asks to be retried in a second, until pend.go
-- has a row.
CREATE FUNCTION pend.write(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pend.writes
    SELECT (input ->> 'task_id')::bigint, input ->> 'step_name', (input ->> 'attempt')::integer,
           coalesce(bool_and(p.current_state = 'complete'), true)
      FROM tasker.workflow_steps p
     WHERE p.task_id = (input ->> 'task_id')::bigint AND p.name < input ->> 'step_name';
    IF (input -> 'context' ->> 'flaky')::boolean AND input ->> 'step_name' = 'a'
       AND NOT EXISTS (SELECT FROM pend.go) THEN
        PERFORM tasker.retry_after(1, 'not yet');
    END IF;
    RETURN jsonb_build_object('attempt', (input ->> 'attempt')::integer);
END $$;
SELECT tasker.register_template('{
  "namespace": "pend", "name": "chain", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "pend.write(jsonb)"},
    {"name": "b", "handler": "pend.write(jsonb)", "depends_on": ["a"]},
    {"name": "c", "handler": "pend.write(jsonb)", "depends_on": ["b"]}
  ]}');
});

# 1. Created with dispatch off: nothing has run when the server stops.
$node->safe_psql('postgres', qq{
	SELECT count(tasker.create_task('pend', 'chain', context => jsonb_build_object('n', g)))
	  FROM generate_series(1, $tasks) g});
is( $node->safe_psql('postgres', q{
	SELECT current_state, count(*) FROM tasker.workflow_steps GROUP BY 1}),
	'pending|' . (3 * $tasks), 'with tasker.enabled = off the steps wait');
$node->stop('fast');
$node->adjust_conf('postgresql.conf', 'tasker.enabled', 'on');
$node->start;

ok( $node->poll_query_until('postgres', q{
	SELECT bool_and(current_state = 'complete') FROM tasker.tasks}),
	'after the restart every task is done');
is( $node->safe_psql('postgres', q{
	SELECT current_state, attempts, count(*) FROM tasker.workflow_steps GROUP BY 1, 2}),
	'complete|1|' . (3 * $tasks), 'every step completed at its first attempt');
is( $node->safe_psql('postgres', q{
	SELECT count(*), count(DISTINCT (task_id, step)) FROM pend.writes}),
	3 * $tasks . '|' . 3 * $tasks, 'each step wrote its row once');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE parents_done) FROM pend.writes}),
	3 * $tasks, 'no step ran before its parents were complete');

# 2. Steps waiting for a retry when the server crashes.
$node->safe_psql('postgres', 'TRUNCATE pend.writes');
my $first = $node->safe_psql('postgres', qq{
	SELECT min(tasker.create_task('pend', 'chain', context => jsonb_build_object('n', g, 'flaky', true)))
	  FROM generate_series(1, $tasks) g});
ok( $node->poll_query_until('postgres', qq{
	SELECT count(*) = $tasks FROM tasker.workflow_steps
	 WHERE task_id >= $first AND name = 'a' AND last_failure_at IS NOT NULL}),
	'the first steps have failed and wait for their retry');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM tasker.workflow_steps WHERE task_id >= $first AND name <> 'a' AND attempts > 0}),
	'0', 'their children have not run');
$node->stop('immediate');
$node->start;
$node->safe_psql('postgres', 'INSERT INTO pend.go DEFAULT VALUES');

ok( $node->poll_query_until('postgres', q{
	SELECT bool_and(current_state = 'complete') FROM tasker.tasks}),
	'after the crash every task is done');
is( $node->safe_psql('postgres', qq{
	SELECT name, current_state, min(attempts) > 1, max(attempts) = 1, count(*) FROM tasker.workflow_steps
	 WHERE task_id >= $first GROUP BY 1, 2 ORDER BY 1, 2}),
	"a|complete|t|f|$tasks\nb|complete|f|t|$tasks\nc|complete|f|t|$tasks",
	'every step completed: a after failed attempts, b and c at their first');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM tasker.workflow_steps s
	 WHERE s.task_id >= $first
	   AND (SELECT count(*) FROM tasker.workflow_step_transitions t
	         WHERE t.workflow_step_id = s.workflow_step_id AND t.to_state = 'complete') <> 1}),
	'0', 'each step completed exactly once');
is( $node->safe_psql('postgres', qq{
	SELECT count(*), count(DISTINCT (w.task_id, w.step)), bool_and(w.attempt = s.attempts AND w.parents_done)
	  FROM pend.writes w JOIN tasker.workflow_steps s ON s.task_id = w.task_id AND s.name = w.step}),
	3 * $tasks . '|' . 3 * $tasks . '|t',
	'each step\'s row exists once, from the attempt that completed, after its parents');

$node->stop;
done_testing();
