# 025_enabled_off_on.pl — tasker.enabled turns dispatch off and on without
# a restart (ALTER SYSTEM + pg_reload_conf()).
#
# A step that is running when dispatch is turned off finishes, at its first
# attempt; its child is not started, nor is any step of tasks created while
# dispatch is off: they stay pending, the executors exit, the dispatcher
# stays (idle).  Turned on again, everything completes, each step at its
# first attempt, once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tasks = 5;

my $node = PostgreSQL::Test::Cluster->new('enabled_off_on');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
tasker.executor_idle_timeout = 60s
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA onoff;
CREATE TABLE onoff.release (task_id bigint);
CREATE TABLE onoff.writes (task_id bigint, step text, attempt integer);
-- Writes a row; the first step of a task listed in onoff.release waits
-- for its release row.
CREATE FUNCTION onoff.write(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (input -> 'context' ->> 'hold')::boolean AND input ->> 'step_name' = 'a' THEN
        WHILE NOT EXISTS (SELECT FROM onoff.release WHERE task_id = (input ->> 'task_id')::bigint) LOOP
            PERFORM pg_sleep(0.02);
        END LOOP;
    END IF;
    INSERT INTO onoff.writes VALUES ((input ->> 'task_id')::bigint, input ->> 'step_name',
                                     (input ->> 'attempt')::integer);
    RETURN '{}';
END $$;
SELECT tasker.register_template('{
  "namespace": "onoff", "name": "chain", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "onoff.write(jsonb)"},
    {"name": "b", "handler": "onoff.write(jsonb)", "depends_on": ["a"]}
  ]}');
});

# set_enabled changes tasker.enabled and waits until the server has
# reloaded (a new session sees the value: the postmaster has reread the
# file and signalled its children).
sub set_enabled
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET tasker.enabled = $value; SELECT pg_reload_conf()");
	ok($node->poll_query_until('postgres', 'SHOW tasker.enabled', $value),
		"tasker.enabled is $value");
}

sub executors
{
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tasker executor'});
}

# Dispatch on: a task whose first step waits for its release.
my $held = $node->safe_psql('postgres',
	q{SELECT tasker.create_task('onoff', 'chain', context => '{"hold": true}')});
ok( $node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM tasker.workers w JOIN tasker.workflow_steps s
	    ON s.workflow_step_id = w.step_id WHERE s.task_id = $held AND s.name = 'a'}),
	'dispatch on: an executor runs the held step');
my $dispatcher = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker dispatcher'});

# Dispatch off, while that step runs; then more tasks, and the release.
set_enabled('off');
my $first = $node->safe_psql('postgres', qq{
	SELECT min(tasker.create_task('onoff', 'chain', context => jsonb_build_object('n', g)))
	  FROM generate_series(1, $tasks) g});
$node->safe_psql('postgres', "INSERT INTO onoff.release VALUES ($held)");
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state = 'complete' FROM tasker.workflow_steps WHERE task_id = $held AND name = 'a'}),
	'the step that was running when dispatch went off finishes');
ok( $node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'tasker executor'}),
	'then the executors exit');

# Nothing new starts while dispatch is off.  There is no event to wait for
# when nothing is to happen: give the dispatcher 20 poll intervals (a step
# runs within one when dispatch is on), then look.
sleep(2);
is( $node->safe_psql('postgres', qq{
	SELECT string_agg(DISTINCT current_state, ',') FROM tasker.workflow_steps
	 WHERE task_id >= $first OR (task_id = $held AND name = 'b')}),
	'pending', 'dispatch off: the child of the finished step and the new tasks\' steps stay pending');
is( $node->safe_psql('postgres', qq{
	SELECT string_agg(DISTINCT current_state, ',') FROM tasker.tasks WHERE task_id >= $first}),
	'pending', 'dispatch off: the new tasks stay pending');
is(executors(), '0', 'dispatch off: no executor started');
is( $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker dispatcher'}),
	$dispatcher, 'dispatch off: the dispatcher is still there, idle');

# Dispatch on again: everything completes.
my $on_at = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
set_enabled('on');
ok( $node->poll_query_until('postgres', q{
	SELECT bool_and(current_state = 'complete') FROM tasker.tasks}),
	'dispatch on: every task completes');
is( $node->safe_psql('postgres', q{
	SELECT count(*), bool_and(attempts = 1) FROM tasker.workflow_steps}),
	2 * ($tasks + 1) . '|t', 'every step completed at its first attempt');
is( $node->safe_psql('postgres', q{
	SELECT count(*), count(DISTINCT (task_id, step)), bool_and(attempt = 1) FROM onoff.writes}),
	2 * ($tasks + 1) . '|' . 2 * ($tasks + 1) . '|t', 'each step wrote its row once');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE last_attempted_at >= '$on_at') FROM tasker.workflow_steps
	 WHERE task_id >= $first OR (task_id = $held AND name = 'b')}),
	2 * $tasks + 1, 'those steps were all claimed after dispatch was back on');

$node->stop;
done_testing();
