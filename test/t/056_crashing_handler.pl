# 056_crashing_handler.pl — a handler that crashes the server each time it
# runs (a C function's segfault, the OOM killer) costs one attempt per crash.
#
# The handler kills its own backend with SIGKILL (COPY TO PROGRAM, as a
# superuser template owner): the postmaster restarts every process, as for
# any crash.  The executor's claim counts the attempt, so it must reach the
# disk before the handler runs; a claim lost in the crash would leave the
# step ready with its attempt uncounted, and the step would crash the
# server again and again.  Expected: exactly max_attempts crashes, then the
# step in permanent error with its attempts counted, the task in error, and
# the server up and running other work.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $max_attempts = 3;

my $node = PostgreSQL::Test::Cluster->new('crashing_handler');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
restart_after_crash = on
tasker.poll_interval = 100ms
tasker.backoff_base = 0
});
$node->start;

$node->safe_psql('postgres', qq{
CREATE EXTENSION tasker;
CREATE SCHEMA poison;
CREATE FUNCTION poison.crash(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
    -- the shell's parent is this backend
    COPY (SELECT 1) TO PROGRAM 'kill -9 \$PPID';
    RETURN '{}';
END \$\$;
CREATE FUNCTION poison.fine(input jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{"ok": true}''::jsonb';
SELECT tasker.register_template(jsonb_build_object(
  'namespace', 'poison', 'name', 'pill', 'version', '1.0.0',
  'steps', jsonb_build_array(jsonb_build_object(
      'name', 'boom', 'handler', 'poison.crash(jsonb)', 'max_attempts', $max_attempts))));
SELECT tasker.register_template(jsonb_build_object(
  'namespace', 'poison', 'name', 'healthy', 'version', '1.0.0',
  'steps', jsonb_build_array(jsonb_build_object('name', 'one', 'handler', 'poison.fine(jsonb)'))));
});

my $log_offset = -s $node->logfile;
my $task_id = $node->safe_psql('postgres', q{SELECT tasker.create_task('poison', 'pill')});

# Once the attempts are spent the step is in error and nothing crashes any more.
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state = 'error' FROM tasker.tasks WHERE task_id = $task_id}),
	'the task ends in error');

my $crashes = () = slurp_file($node->logfile, $log_offset) =~
	/background worker "tasker executor" \(PID \d+\) was terminated by signal 9/g;
is($crashes, $max_attempts, "the server crashed $max_attempts times: once per attempt");

is( $node->safe_psql('postgres', qq{
	SELECT current_state, attempts, error ->> 'message'
	  FROM tasker.workflow_steps WHERE task_id = $task_id}),
	"error|$max_attempts|executor exited mid-step",
	'the step is in permanent error with every attempt counted');

# Each claim by an executor that died is followed by its recovery; the
# transitions number the attempts 1..max_attempts.
is( $node->safe_psql('postgres', qq{
	SELECT string_agg(concat_ws(' ', to_state, metadata ->> 'attempt'), ', ' ORDER BY sort_key)
	  FROM tasker.workflow_step_transitions WHERE task_id = $task_id}),
	join(', ', map { ("in_progress $_", $_ < $max_attempts ? "waiting_for_retry $_" : "error $_") }
		1 .. $max_attempts),
	'the transition log shows one claim and one recovery per attempt');

# The server is up and the executors run other work.
my $healthy = $node->safe_psql('postgres', q{SELECT tasker.create_task('poison', 'healthy')});
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $healthy}),
	'another task completes afterwards');
$crashes = () = slurp_file($node->logfile, $log_offset) =~ /was terminated by signal 9/g;
is($crashes, $max_attempts, 'no further crash');

$node->stop;
done_testing();
