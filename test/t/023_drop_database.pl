# 023_drop_database.pl — DROP DATABASE of a database that tasker serves.
#
# The database "doomed" has tasker, a dispatcher and an executor that is in
# the middle of a step.  A plain DROP DATABASE (no FORCE) by its owner
# succeeds: tasker's utility hook stops the database's workers first, so
# the drop does not find them connected.  A DROP DATABASE that is refused
# (the role does not own the database, or it is run in a transaction
# block) leaves the workers alone: the step they run finishes at its first
# attempt under the same dispatcher.  After
# the drop the launcher carries on without a complaint in the log, and
# serves a database created afterwards.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('drop_database');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
});
$node->start;

my $setup = q{
CREATE EXTENSION tasker;
CREATE SCHEMA hold;
CREATE TABLE hold.release (task_id bigint);
-- Runs until the task is released.
CREATE FUNCTION hold.wait(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    WHILE NOT EXISTS (SELECT FROM hold.release WHERE task_id = (input ->> 'task_id')::bigint) LOOP
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN jsonb_build_object('attempt', (input ->> 'attempt')::integer);
END $$;
SELECT tasker.register_template('{
  "namespace": "hold", "name": "one", "version": "1.0.0",
  "steps": [{"name": "held", "handler": "hold.wait(jsonb)"}]}');
};
$node->safe_psql('postgres', 'CREATE DATABASE doomed; CREATE ROLE mallory LOGIN');
$node->safe_psql('doomed', $setup);
my $launcher = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker launcher'});
ok($launcher =~ /^\d+$/, 'one launcher runs');

# start_held creates a task in the database and waits until an executor
# runs its step; returns the task and the pids of dispatcher and executor.
sub start_held
{
	my ($db) = @_;
	my $task_id = $node->safe_psql($db, q{SELECT tasker.create_task('hold', 'one')});
	ok( $node->poll_query_until($db, qq{
		SELECT count(*) = 1 FROM tasker.workers w JOIN tasker.workflow_steps s
		    ON s.workflow_step_id = w.step_id WHERE s.task_id = $task_id}),
		"$db: an executor runs the step of task $task_id");
	my ($dispatcher, $executor) = split /\|/, $node->safe_psql($db, qq{
		SELECT (SELECT pid FROM tasker.workers WHERE kind = 'dispatcher' AND database = '$db'),
		       (SELECT w.pid FROM tasker.workers w JOIN tasker.workflow_steps s
		            ON s.workflow_step_id = w.step_id WHERE s.task_id = $task_id)});
	return ($task_id, $dispatcher, $executor);
}

# 1. A DROP DATABASE that is refused does not touch the workers.
my ($task_id, $dispatcher, $executor) = start_held('doomed');
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE doomed',
	extra_params => [ '-U', 'mallory' ]);
like($stderr, qr/must be owner of database doomed/, 'a role that does not own the database cannot drop it');
($ret, $stdout, $stderr) = $node->psql('postgres', 'BEGIN; DROP DATABASE doomed; COMMIT');
like($stderr, qr/DROP DATABASE cannot run inside a transaction block/,
	'DROP DATABASE is refused in a transaction block');
$node->safe_psql('doomed', "INSERT INTO hold.release VALUES ($task_id)");
ok( $node->poll_query_until('doomed', qq{
	SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $task_id}),
	'the task completes');
is( $node->safe_psql('doomed', qq{
	SELECT attempts, claimed_by, (SELECT pid FROM tasker.workers WHERE kind = 'dispatcher')
	  FROM tasker.workflow_steps WHERE task_id = $task_id}),
	"1|tasker executor $executor|$dispatcher",
	'the refused drops did not stop the executor mid-step nor the dispatcher');

# 2. Its owner drops it while a step runs: no FORCE needed.
($task_id, $dispatcher, $executor) = start_held('doomed');
my $oid = $node->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'doomed'});
my $log_offset = -s $node->logfile;
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE doomed');
is($ret, 0, 'DROP DATABASE succeeds while the dispatcher and an executor run');
is($stderr, '', 'without an error or a warning');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM pg_stat_activity WHERE datid = $oid OR pid IN ($dispatcher, $executor)}),
	'0', "no process of the dropped database remains");

# The launcher has gone round its loop since: it serves a new database.
$node->safe_psql('postgres', 'CREATE DATABASE after');
$node->safe_psql('after', $setup);
($task_id) = start_held('after');
$node->safe_psql('after', "INSERT INTO hold.release VALUES ($task_id)");
ok( $node->poll_query_until('after', qq{
	SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $task_id}),
	'a database created after the drop is served');
is( $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker launcher'}),
	$launcher, 'the launcher is the one from before');

# Nothing in the log but the stop of doomed's two workers.
my @complaints = grep {
	/\b(WARNING|ERROR|FATAL|PANIC):/
	  && !/FATAL:  terminating background worker "tasker (dispatcher|executor)" due to administrator command/
} split /\n/, slurp_file($node->logfile, $log_offset);
is(join("\n", @complaints), '', 'no complaint in the log since the drop');
my $stops = () = slurp_file($node->logfile, $log_offset) =~
	/terminating background worker "tasker (?:dispatcher|executor)" due to administrator command/g;
is($stops, 2, 'the drop stopped the dispatcher and the executor');

$node->stop;
done_testing();
