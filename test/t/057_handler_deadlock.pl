# 057_handler_deadlock.pl — two handlers that deadlock with each other.
#
# Two one-step tasks whose handlers take two advisory locks in opposite
# orders, each waiting until the other holds its first lock: two executors
# running them at once deadlock, and PostgreSQL aborts one handler.  Each
# step runs alone (an executor's first claim is of one step), so the victim
# has no neighbour to blame: it reruns its handler at the same attempt.
# With max_attempts = 1 a deadlock counted as a failure would leave the
# victim in error; expected: both tasks complete, each step by its first
# attempt, the victim's first run undone (one row per step), and the rerun
# in the server log.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('handler_deadlock');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
deadlock_timeout = 100ms
tasker.poll_interval = 100ms
tasker.min_concurrent_steps = 2
tasker.max_concurrent_steps = 2
tasker.max_executors = 2
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA dl;
CREATE TABLE dl.runs (step_name text, attempt integer);
-- Takes lock "mine", waits (up to 30 s) until the other step holds its own
-- first lock or is already complete, then takes lock "theirs".
CREATE FUNCTION dl.cross(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    mine integer := CASE input ->> 'step_name' WHEN 'left' THEN 1 ELSE 2 END;
    theirs integer := 3 - mine;
    other text := CASE input ->> 'step_name' WHEN 'left' THEN 'right' ELSE 'left' END;
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    INSERT INTO dl.runs VALUES (input ->> 'step_name', (input ->> 'attempt')::integer);
    PERFORM pg_advisory_xact_lock(4242, mine);
    WHILE clock_timestamp() < deadline
          AND NOT EXISTS (SELECT 1 FROM pg_locks
                           WHERE locktype = 'advisory' AND classid = 4242 AND objid = theirs
                             AND granted)
          AND NOT EXISTS (SELECT 1 FROM tasker.workflow_steps
                           WHERE name = other AND current_state = 'complete') LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
    PERFORM pg_advisory_xact_lock(4242, theirs);
    RETURN jsonb_build_object('ran', input ->> 'step_name');
END $$;
SELECT tasker.register_template('{"namespace": "dl", "name": "left", "version": "1.0.0",
  "steps": [{"name": "left", "handler": "dl.cross(jsonb)", "max_attempts": 1}]}');
SELECT tasker.register_template('{"namespace": "dl", "name": "right", "version": "1.0.0",
  "steps": [{"name": "right", "handler": "dl.cross(jsonb)", "max_attempts": 1}]}');
});

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	SELECT tasker.create_task('dl', 'left'), tasker.create_task('dl', 'right')});

ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM tasker.tasks WHERE current_state IN ('complete', 'error')}),
	'both tasks finish');

my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/tasker step \d+ deadlocked; running its handler again \(1 of 3\)/,
	'one handler deadlocked and ran again');

is( $node->safe_psql('postgres', q{
	SELECT string_agg(name || ' ' || current_state || ' ' || attempts, ', ' ORDER BY name)
	  FROM tasker.workflow_steps}),
	'left complete 1, right complete 1',
	'both steps complete by their first (and only) attempt');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(step_name || ' ' || attempt, ', ' ORDER BY step_name) FROM dl.runs}),
	'left 1, right 1',
	"the victim's first run was undone: one row per step");
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_step_transitions WHERE to_state IN ('waiting_for_retry', 'error')}),
	'0', 'no failure recorded');

$node->stop;
done_testing();
