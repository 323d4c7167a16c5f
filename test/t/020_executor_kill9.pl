# 020_executor_kill9.pl — an executor killed with SIGKILL in the middle of
# a step.
#
# A chain of three SQL-handler steps; the middle one inserts a row and then
# sleeps on its first attempt.  While it sleeps, its executor is killed
# with kill -9: the postmaster treats that as a crash and restarts every
# process.  Afterwards the dispatcher finds the step in progress under an
# executor that no longer exists, counts the attempt as lost and the step
# runs again.  Then: the task is complete; the step completed exactly once,
# by its second attempt; the row the first attempt wrote was rolled back
# with it, so the row exists once; and the transition log shows the lost
# attempt with the killed executor's name.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('executor_kill9');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
restart_after_crash = on
tasker.poll_interval = 100ms
tasker.backoff_base = 0
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA crash;
CREATE TABLE crash.writes (step_id bigint, attempt integer, pid integer);
-- Writes a row naming the attempt; the first attempt of "slow" then sleeps
-- until it is killed.
CREATE FUNCTION crash.write(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crash.writes VALUES ((input ->> 'step_id')::bigint,
                                     (input ->> 'attempt')::integer, pg_backend_pid());
    IF input ->> 'step_name' = 'slow' AND (input ->> 'attempt')::integer = 1 THEN
        PERFORM pg_sleep(600);
    END IF;
    RETURN jsonb_build_object('attempt', (input ->> 'attempt')::integer);
END $$;
SELECT tasker.register_template('{
  "namespace": "crash", "name": "chain", "version": "1.0.0",
  "steps": [
    {"name": "first", "handler": "crash.write(jsonb)"},
    {"name": "slow", "handler": "crash.write(jsonb)", "depends_on": ["first"], "max_attempts": 3},
    {"name": "last", "handler": "crash.write(jsonb)", "depends_on": ["slow"]}
  ]}');
});
my $task_id = $node->safe_psql('postgres', q{SELECT tasker.create_task('crash', 'chain')});
my $slow_id = $node->safe_psql('postgres', qq{
	SELECT workflow_step_id FROM tasker.workflow_steps WHERE task_id = $task_id AND name = 'slow'});

# Wait until an executor sleeps inside the handler of "slow".
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'tasker executor' AND wait_event = 'PgSleep'}),
	'an executor is running the slow step');
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker executor' AND wait_event = 'PgSleep'});
is( $node->safe_psql('postgres', qq{
	SELECT w.step_id = $slow_id AND s.current_state = 'in_progress' AND s.attempts = 1
	       AND s.claimed_by = 'tasker executor ' || w.pid
	  FROM tasker.workers w JOIN tasker.workflow_steps s ON s.workflow_step_id = w.step_id
	 WHERE w.pid = $pid}),
	't', 'tasker.workers and the step name the executor that runs it');

# The claim is flushed before the handler runs (056 shows why); check that
# the WAL is on disk past it, so that the lost attempt is the one this test
# follows.
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
is( $node->safe_psql('postgres', qq{
	CREATE TABLE crash.flushed AS SELECT 1;
	SELECT pg_current_wal_flush_lsn() >= '$lsn'}),
	't', 'the claim is on disk');

my $log_offset = -s $node->logfile;
ok(kill('KILL', $pid), "executor $pid killed with SIGKILL");
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
like(slurp_file($node->logfile, $log_offset),
	qr/background worker "tasker executor" \(PID $pid\) was terminated by signal 9/,
	'the postmaster saw the executor die and restarted the cluster');

# After the restart the step is recovered and runs again; the chain ends.
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $task_id}),
	'the task completes after the crash');

is( $node->safe_psql('postgres', qq{
	SELECT name, current_state, attempts, results ->> 'attempt'
	  FROM tasker.workflow_steps WHERE task_id = $task_id ORDER BY workflow_step_id}),
	"first|complete|1|1\nslow|complete|2|2\nlast|complete|1|1",
	'every step complete; the slow one by its second attempt');

# The first attempt's row died with its transaction: one row, the second attempt's.
is( $node->safe_psql('postgres', qq{
	SELECT string_agg(attempt::text, ',' ORDER BY attempt) FROM crash.writes WHERE step_id = $slow_id}),
	'2', 'the row of the slow step exists once, written by the attempt that completed');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM crash.writes}),
	'3', 'one row per step in all');

# The transition log: the claim by the killed executor, the recovery that
# counted the attempt as lost, the new claim, the single completion.
is( $node->safe_psql('postgres', qq{
	SELECT string_agg(concat_ws(' ', from_state, '->', to_state, metadata ->> 'attempt',
	                            metadata ->> 'cause',
	                            CASE WHEN metadata ->> 'worker' = 'tasker executor $pid' THEN 'killed' END),
	                  E'\\n' ORDER BY sort_key)
	  FROM tasker.workflow_step_transitions WHERE workflow_step_id = $slow_id}),
	"pending -> in_progress 1 killed
in_progress -> waiting_for_retry 1 executor_lost killed
waiting_for_retry -> in_progress 2
in_progress -> complete 2",
	'the transition log shows the lost attempt, then one completion');
is( $node->safe_psql('postgres', qq{
	SELECT error ->> 'message' FROM tasker.workflow_steps WHERE workflow_step_id = $slow_id}),
	'executor exited mid-step', 'the lost attempt is recorded as the step\'s last error');

# Nothing is left in progress, and the new executors run under new names.
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_steps WHERE current_state <> 'complete' OR lease_expires_at IS NOT NULL}),
	'0', 'no step left in progress');

$node->stop;
done_testing();
