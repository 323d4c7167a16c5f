# 053_executor_memory_stats.pl — a long-lived executor neither grows nor
# keeps its table statistics to itself.
#
# One executor (tasker.max_executors = 1, a long idle timeout) runs a few
# thousand one-step tasks, one in twenty failing once.  Its
# TopMemoryContext, as pg_log_backend_memory_contexts() reports it, is the
# same size after 3,000 more steps as after the first 300 (each step used to
# leave its activity string, and each failure its error, there), and while
# it is still running the statistics views count the rows it updated and
# inserted (a background worker must send them itself; autovacuum decides
# from them when the step tables need a vacuum).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('executor_memory');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
tasker.backoff_base = 0
tasker.max_executors = 1
tasker.executor_idle_timeout = 600s
log_statement = none
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE FUNCTION public.step(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (input ->> 'step_id')::bigint % 20 = 0 AND (input ->> 'attempt')::integer = 1 THEN
        RAISE EXCEPTION 'flaky first attempt of step %', input ->> 'step_id';
    END IF;
    RETURN '{}';
END $$;
SELECT tasker.register_template('{
  "namespace": "mem", "name": "one", "version": "1.0.0",
  "steps": [{"name": "a", "handler": "public.step(jsonb)", "max_attempts": 3}]}');
});

# run N tasks to completion; returns the executor's pid
sub run_tasks
{
	my ($n) = @_;
	$node->safe_psql('postgres',
		"SELECT count(tasker.create_task('mem', 'one')) FROM generate_series(1, $n)");
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM tasker.tasks WHERE current_state <> 'complete'})
	  or die 'tasks did not complete';
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker executor'});
}

# the bytes used in the executor's TopMemoryContext itself
sub top_memory_used
{
	my ($pid) = @_;
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	$node->wait_for_log(qr/\[$pid\].*Grand total/, $offset);
	my ($used) = slurp_file($node->logfile, $offset) =~
	  /\[$pid\].*level: 0; TopMemoryContext: .*; (\d+) used/;
	return $used;
}

my $pid = run_tasks(300);
my $before = top_memory_used($pid);
is(run_tasks(3000), $pid, 'one executor ran every step');
my $after = top_memory_used($pid);
note "TopMemoryContext used: $before bytes after 300 steps, $after bytes after 3,300";
cmp_ok($after - $before, '<', 32 * 1024, 'its TopMemoryContext did not grow with the steps');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_step_transitions WHERE to_state = 'waiting_for_retry'}),
	'165', 'one step in twenty failed once on the way');

# The executor is still running: its statistics must have been sent anyway.
ok( $node->poll_query_until('postgres', q{
	SELECT n_tup_upd >= 2 * 3300 FROM pg_stat_user_tables
	 WHERE relid = 'tasker.workflow_steps'::regclass}),
	'the statistics count the executor\'s updates of workflow_steps');
ok( $node->poll_query_until('postgres', q{
	SELECT n_tup_ins >= 2 * 3300 FROM pg_stat_user_tables
	 WHERE relid = 'tasker.workflow_step_transitions'::regclass}),
	'and its inserts into workflow_step_transitions');
is($node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker executor'}),
	$pid, 'while it still runs');
# waiting for work, it says so (it showed "active", claiming)
ok( $node->poll_query_until('postgres', q{
	SELECT state = 'idle' AND wait_event_type = 'Extension'
	  FROM pg_stat_activity WHERE backend_type = 'tasker executor'}),
	'an executor waiting for work shows as idle in pg_stat_activity');

$node->stop;
done_testing();
