# 021_sigterm_midstep.pl — SIGTERM while a step runs: of one executor, then
# of the whole server (pg_ctl stop -m fast).
#
# The handler inserts a row and, on the first attempt, sleeps.  SIGTERM
# ends the executor with a FATAL (no crash restart); its transaction rolls
# back, the claim stays committed, and the dispatcher counts the attempt as
# lost once the executor is gone — right away for a single executor, at the
# next start for the server.  Each time the step is retried and completes
# exactly once, by its second attempt, and its row exists once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('sigterm_midstep');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
tasker.backoff_base = 0
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA term;
CREATE TABLE term.writes (step_id bigint, attempt integer);
CREATE FUNCTION term.write(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO term.writes VALUES ((input ->> 'step_id')::bigint, (input ->> 'attempt')::integer);
    IF (input ->> 'attempt')::integer = 1 THEN
        PERFORM pg_sleep(600);
    END IF;
    RETURN jsonb_build_object('attempt', (input ->> 'attempt')::integer);
END $$;
SELECT tasker.register_template('{
  "namespace": "term", "name": "one", "version": "1.0.0",
  "steps": [{"name": "sleepy", "handler": "term.write(jsonb)", "max_attempts": 3}]}');
});

# run_until_asleep creates a task and waits until its step sleeps in an
# executor; returns the task, its step and the executor's pid.
sub run_until_asleep
{
	my $task_id = $node->safe_psql('postgres', q{SELECT tasker.create_task('term', 'one')});
	my $step_id = $node->safe_psql('postgres',
		"SELECT workflow_step_id FROM tasker.workflow_steps WHERE task_id = $task_id");
	ok( $node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM tasker.workers w JOIN pg_stat_activity a USING (pid)
		 WHERE w.step_id = $step_id AND a.wait_event = 'PgSleep'}),
		"task $task_id: its step sleeps in an executor");
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM tasker.workers WHERE step_id = $step_id");
	return ($task_id, $step_id, $pid);
}

# check_retried asserts that the step completed once, by its second
# attempt, after the first was counted as lost.
sub check_retried
{
	my ($what, $task_id, $step_id, $pid) = @_;
	ok( $node->poll_query_until('postgres', qq{
		SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $task_id}),
		"$what: the task completes");
	is( $node->safe_psql('postgres', qq{
		SELECT current_state, attempts, results ->> 'attempt' FROM tasker.workflow_steps
		 WHERE workflow_step_id = $step_id}),
		'complete|2|2', "$what: the step completed by its second attempt");
	is( $node->safe_psql('postgres', qq{
		SELECT string_agg(attempt::text, ',') FROM term.writes WHERE step_id = $step_id}),
		'2', "$what: the row exists once, from the second attempt");
	is( $node->safe_psql('postgres', qq{
		SELECT string_agg(concat_ws(' ', from_state, '->', to_state, metadata ->> 'attempt',
		                            metadata ->> 'cause',
		                            CASE WHEN metadata ->> 'worker' = 'tasker executor $pid' THEN 'stopped' END),
		                  E'\\n' ORDER BY sort_key)
		  FROM tasker.workflow_step_transitions WHERE workflow_step_id = $step_id}),
		"pending -> in_progress 1 stopped
in_progress -> waiting_for_retry 1 executor_lost stopped
waiting_for_retry -> in_progress 2
in_progress -> complete 2",
		"$what: the transition log shows the lost attempt and one completion");
}

# 1. SIGTERM of one executor (pg_terminate_backend): it exits with a FATAL,
# the server carries on, and the dispatcher recovers the step.
my ($task_id, $step_id, $pid) = run_until_asleep();
my $log_offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
	't', "executor $pid sent SIGTERM");
check_retried('executor SIGTERM', $task_id, $step_id, $pid);
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/FATAL:  terminating background worker "tasker executor" due to administrator command/,
	'the executor stopped with the usual FATAL');
unlike($log, qr/terminating any other active server processes|was terminated by signal/,
	'an executor stopped by SIGTERM does not restart the cluster');

# 2. SIGTERM of the server (pg_ctl stop -m fast) while a step sleeps: a
# clean shutdown; at the next start the step is retried.
($task_id, $step_id, $pid) = run_until_asleep();
$log_offset = -s $node->logfile;
$node->stop('fast');
$log = slurp_file($node->logfile, $log_offset);
like($log, qr/FATAL:  terminating background worker "tasker executor" due to administrator command/,
	'the executor stopped at the fast shutdown');
like($log, qr/database system is shut down/, 'the server shut down cleanly');
$node->start;
check_retried('server SIGTERM', $task_id, $step_id, $pid);

is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_steps WHERE current_state <> 'complete' OR lease_expires_at IS NOT NULL}),
	'0', 'no step left in progress');

$node->stop;
done_testing();
