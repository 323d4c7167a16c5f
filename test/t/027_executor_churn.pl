# 027_executor_churn.pl — executors that come and go are never mistaken
# for executors that died.
#
# The dispatcher counts a step in progress as lost when the executor that
# claimed it is not in its list of live executors.  An executor that starts
# after the list was read and claims before the recovery query runs must
# not be taken for a dead one.  Here executors start and exit all the time
# (tasker.executor_idle_timeout = 0, tasks arriving in small bursts), the
# dispatcher's housekeeping runs every 10 ms, and the lease reaper (which
# runs between the list and the recovery) is made to take 20 ms, to widen
# that window.  Every step must then complete at its first attempt, with
# no attempt counted as lost.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 4;
my $per_client = 150;
my $tasks = $clients * $per_client;

my $node = PostgreSQL::Test::Cluster->new('executor_churn');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 64
tasker.poll_interval = 10ms
tasker.executor_idle_timeout = 0
log_statement = none
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE FUNCTION public.noop(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker.register_template('{
  "namespace": "churn", "name": "one", "version": "1.0.0",
  "steps": [{"name": "a", "handler": "public.noop(jsonb)", "max_attempts": 5}]}');
-- A slow reaper: the real one, 20 ms late.
ALTER FUNCTION tasker.reap_expired_leases() RENAME TO reap_expired_leases_real;
CREATE FUNCTION tasker.reap_expired_leases() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.02);
    RETURN tasker.reap_expired_leases_real();
END $$;
});

# Tasks arrive in small bursts, so that executors run out of work, exit,
# and are started again.
my $script = PostgreSQL::Test::Utils::tempdir . '/create.sql';
PostgreSQL::Test::Utils::append_to_file($script,
	q{SELECT tasker.create_task('churn', 'one'); SELECT pg_sleep(random() * 0.02);});
$node->command_ok(
	[ 'pgbench', '-n', '-c', $clients, '-j', $clients, '-t', $per_client, '-f', $script, 'postgres' ],
	"$tasks tasks created in bursts");
ok( $node->poll_query_until('postgres', q{
	SELECT bool_and(current_state = 'complete') FROM tasker.tasks}),
	'every task completes');

my $executors = $node->safe_psql('postgres', q{
	SELECT count(DISTINCT metadata ->> 'worker') FROM tasker.workflow_step_transitions
	 WHERE to_state = 'in_progress'});
note "executors that claimed steps: $executors";
ok($executors > 10, 'executors came and went');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_step_transitions WHERE metadata ->> 'cause' = 'executor_lost'}),
	'0', 'no attempt was counted as lost');
is( $node->safe_psql('postgres', q{
	SELECT count(*), max(attempts) FROM tasker.workflow_steps}),
	"$tasks|1", 'every step completed at its first attempt');

$node->stop;
done_testing();
