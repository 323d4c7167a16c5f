# 051_dump_restore.pl — pg_dump of a database mid-workflow, restored into a
# new database, where the workflows run to completion.
#
# The template mixes SQL-handler and external steps:
#
#     a (sql) -> b (external), c (sql) -> d (sql)
#
# In database "origin" the test brings five kinds of task to where it wants
# them, then pauses the workers (tasker.enabled = off) and dumps:
#   plain     — complete;
#   retry     — c asked for a retry 8 s later (tasker.retry_after): waiting_for_retry;
#   slow      — a sleeps in an executor (only in origin): in progress, held by
#               an executor that does not exist in the copy;
#   abandoned — b claimed with a 4 s lease by a worker that never comes back;
#   extretry  — b failed by its worker with a 5 s backoff: waiting_for_retry;
#   untouched — created while the workers were paused: nothing started.
# The dump (plain SQL, pg_dump) is restored with psql into a new database
# ("copy"), still paused: the copy holds the same tasks, steps, edges,
# transitions and side effects, and the state counters (which are not dumped:
# the restore's COPY counts the rows again) agree with a count.  Then the
# workers resume and the example psql worker (test/workers/psql_worker.sh)
# works the copy's external queue.  In the copy: every task completes; the
# slow steps are counted as lost with their executor and run again; the
# abandoned claims expire and are claimed again; the retries run when due;
# every SQL step's side effect exists exactly once (written in origin for
# the steps that completed there, in the copy for the others); the
# transition logs agree with the final states; a new task gets an id after
# the restored ones (the sequences were dumped) and completes too; and
# tasker.check_invariants() (when it exists) finds nothing.
use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use TaskerChecks;
use Time::HiRes qw(sleep time);

my $node = PostgreSQL::Test::Cluster->new('dump_restore');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
tasker.backoff_base = 0
tasker.max_executors = 6
# one step per claim: a step claimed with a sleeping one would wait behind it
tasker.executor_batch_size = 1
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE origin');
$node->safe_psql('origin', q{
CREATE EXTENSION tasker;
CREATE SCHEMA dump;
CREATE TABLE dump.effects (step_id bigint NOT NULL, attempt integer NOT NULL,
                           db text NOT NULL DEFAULT current_database());
CREATE FUNCTION dump.work(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    kind text := input #>> '{context,kind}';
    attempt integer := (input ->> 'attempt')::integer;
BEGIN
    INSERT INTO dump.effects (step_id, attempt) VALUES ((input ->> 'step_id')::bigint, attempt);
    IF kind = 'slow' AND input ->> 'step_name' = 'a' AND current_database() = 'origin' THEN
        PERFORM pg_sleep(600);
    END IF;
    IF kind = 'retry' AND input ->> 'step_name' = 'c' AND attempt = 1 THEN
        PERFORM tasker.retry_after(8, 'not yet');
    END IF;
    RETURN jsonb_build_object('attempt', attempt, 'db', current_database());
END $$;
SELECT tasker.register_template('{
  "namespace": "dump", "name": "flow", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "dump.work(jsonb)", "max_attempts": 5},
    {"name": "b", "queue": "dump_ext", "depends_on": ["a"], "max_attempts": 5},
    {"name": "c", "handler": "dump.work(jsonb)", "depends_on": ["a"], "max_attempts": 5},
    {"name": "d", "handler": "dump.work(jsonb)", "depends_on": ["b", "c"], "max_attempts": 5}
  ]}');
SELECT tasker.create_task('dump', 'flow', context => jsonb_build_object('kind', k, 'n', n))
  FROM unnest(ARRAY['plain', 'retry', 'slow', 'abandoned', 'extretry']) k, generate_series(1, 3) n
 ORDER BY n, k;
});

# Every "a" runs; the slow ones sleep in their executors; the retries wait.
ok( $node->poll_query_until('origin', q{
	SELECT count(*) FILTER (WHERE s.name = 'a' AND s.current_state = 'complete') = 12
	   AND count(*) FILTER (WHERE t.context ->> 'kind' = 'retry' AND s.name = 'c'
	                          AND s.current_state = 'waiting_for_retry') = 3
	   AND (SELECT count(*) FROM pg_stat_activity
	         WHERE backend_type = 'tasker executor' AND wait_event = 'PgSleep') = 3
	  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)}),
	'origin: the first steps ran, the slow ones sleep in executors, the retries wait');

# An external worker: completes b of plain and retry tasks, fails b of the
# extretry ones with a 5 s backoff, and abandons b of the abandoned ones.
$node->safe_psql('origin', q{
CREATE TABLE dump.claimed AS
SELECT c.step_id, c.attempt, c.input #>> '{context,kind}' AS kind
  FROM tasker.claim_steps('dump_ext', 'origin-worker', 100, '4 seconds') c;
SELECT tasker.complete_step(step_id, attempt, jsonb_build_object('by', 'origin-worker'))
  FROM dump.claimed WHERE kind IN ('plain', 'retry');
SELECT tasker.fail_step(step_id, attempt, '{"message": "try later"}', true, 5)
  FROM dump.claimed WHERE kind = 'extretry';
DROP TABLE dump.claimed;
});
ok( $node->poll_query_until('origin', q{
	SELECT count(*) = 3 FROM tasker.tasks WHERE current_state = 'complete'}),
	'origin: the plain tasks complete');

# Pause the workers: the state stands still (but for the sleeping handlers).
$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = off; SELECT pg_reload_conf()');
ok( $node->poll_query_until('origin', q{
	SELECT count(*) = 0 FROM pg_stat_activity
	 WHERE backend_type = 'tasker executor' AND wait_event IS DISTINCT FROM 'PgSleep'}),
	'origin: the idle executors stopped');
$node->safe_psql('origin', q{
	SELECT tasker.create_task('dump', 'flow', context => jsonb_build_object('kind', 'untouched', 'n', n))
	  FROM generate_series(1, 3) n});

# What the copy must hold: every step's kind, name, state and attempts.
my $steps_query = q{
	SELECT t.context ->> 'kind', s.name, s.current_state, s.attempts, count(*)
	  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
	 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4};
my $origin_steps = $node->safe_psql('origin', $steps_query);
is( $origin_steps, join("\n",
		'abandoned|a|complete|1|3', 'abandoned|b|in_progress|1|3', 'abandoned|c|complete|1|3',
		'abandoned|d|pending|0|3',
		'extretry|a|complete|1|3', 'extretry|b|waiting_for_retry|1|3', 'extretry|c|complete|1|3',
		'extretry|d|pending|0|3',
		'plain|a|complete|1|3', 'plain|b|complete|1|3', 'plain|c|complete|1|3', 'plain|d|complete|1|3',
		'retry|a|complete|1|3', 'retry|b|complete|1|3', 'retry|c|waiting_for_retry|1|3',
		'retry|d|pending|0|3',
		'slow|a|in_progress|1|3', 'slow|b|pending|0|3', 'slow|c|pending|0|3', 'slow|d|pending|0|3',
		'untouched|a|pending|0|3', 'untouched|b|pending|0|3', 'untouched|c|pending|0|3',
		'untouched|d|pending|0|3'),
	'origin, paused: every kind of task stands where the test wants it');

my $fingerprint = q{
	SELECT (SELECT count(*) || ' ' || coalesce(sum(hashtext(t::text)), 0) FROM tasker.tasks t),
	       (SELECT count(*) || ' ' || coalesce(sum(hashtext(s::text)), 0) FROM tasker.workflow_steps s),
	       (SELECT count(*) || ' ' || coalesce(sum(hashtext(e::text)), 0) FROM tasker.workflow_step_edges e),
	       (SELECT count(*) || ' ' || coalesce(sum(hashtext(x::text)), 0) FROM tasker.task_transitions x),
	       (SELECT count(*) || ' ' || coalesce(sum(hashtext(x::text)), 0) FROM tasker.workflow_step_transitions x),
	       (SELECT count(*) || ' ' || coalesce(sum(hashtext(n::text)), 0) FROM tasker.named_tasks n),
	       (SELECT count(*) || ' ' || coalesce(sum(hashtext(n::text)), 0) FROM tasker.named_steps n),
	       (SELECT count(*) || ' ' || coalesce(sum(hashtext(f::text)), 0) FROM dump.effects f)};
my $origin_fingerprint = $node->safe_psql('origin', $fingerprint);

# Dump, and restore into a new database with psql.
my $dump = PostgreSQL::Test::Utils::tempdir . '/origin.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('origin'), '-f', $dump ], 'pg_dump of origin');
$node->safe_psql('postgres', 'CREATE DATABASE copy');
my ($ret, $out, $err) = $node->psql('copy', slurp_file($dump), on_error_stop => 1);
is($ret, 0, 'the dump restores into a new database (psql < dump)');
is($err, '', 'without an error or a warning');

is($node->safe_psql('copy', $fingerprint), $origin_fingerprint,
	'the copy holds the same templates, tasks, steps, edges, transitions and side effects');
is(state_counts_from_counters($node, 'copy'), state_counts_from_rows($node, 'copy'),
	'the copy\'s state counters agree with a count of its rows');

# Resume, with an external worker on the copy's queue.
$node->safe_psql('postgres', 'ALTER SYSTEM RESET tasker.enabled; SELECT pg_reload_conf()');
my $workers = dirname(__FILE__) . '/../workers';
my $worker;
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = 'copy';
	$worker = IPC::Run::start([ "$workers/psql_worker.sh", 'dump_ext', 'copy-worker' ],
		'>', \my $wout, '2>', \my $werr);
}
my $new_task = $node->safe_psql('copy', q{
	SELECT tasker.create_task('dump', 'flow', context => '{"kind": "new"}')});
my $deadline = time + 90;
my $unfinished;
while (time < $deadline)
{
	$unfinished = $node->safe_psql('copy', q{
		SELECT count(*) FROM tasker.tasks WHERE current_state <> 'complete'});
	last if $unfinished == 0;
	sleep 0.2;
}
$worker->kill_kill;
is($unfinished, '0', 'copy: every task completes');
is($node->safe_psql('copy', q{SELECT max(task_id) FROM tasker.tasks}), $new_task,
	'copy: a new task gets an id after the restored ones');

# How each kind got there: the lost claims were recovered, the retries ran.
is( $node->safe_psql('copy', q{
	SELECT kind, name, attempts, trail, count(*) FROM (
	    SELECT t.context ->> 'kind' AS kind, s.name, s.attempts,
	           string_agg(concat_ws(' ', x.to_state, x.metadata ->> 'cause'), ', ' ORDER BY x.sort_key) AS trail
	      FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
	      JOIN tasker.workflow_step_transitions x USING (task_id, workflow_step_id)
	     WHERE (t.context ->> 'kind', s.name) IN (('slow', 'a'), ('abandoned', 'b'), ('retry', 'c'), ('extretry', 'b'))
	     GROUP BY t.task_id, s.workflow_step_id, 1, 2, 3) per_step
	 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2}),
	join("\n",
		'abandoned|b|2|in_progress, waiting_for_retry lease_expired, in_progress, complete|3',
		'extretry|b|2|in_progress, waiting_for_retry failed, in_progress, complete|3',
		'retry|c|2|in_progress, waiting_for_retry failed, in_progress, complete|3',
		'slow|a|2|in_progress, waiting_for_retry executor_lost, in_progress, complete|3'),
	'copy: the lost executor claims and expired leases were retried, the retries ran when due');

is( $node->safe_psql('copy', q{
	SELECT count(*)
	  FROM tasker.workflow_steps s
	  LEFT JOIN (SELECT step_id, count(*) AS n, max(attempt) AS attempt FROM dump.effects GROUP BY 1) e
	         ON e.step_id = s.workflow_step_id
	 WHERE s.handler IS NOT NULL AND (e.n IS DISTINCT FROM 1 OR e.attempt <> s.attempts)}),
	'0', 'copy: every SQL step\'s side effect exists exactly once, by the attempt that completed');
is( $node->safe_psql('copy', q{
	SELECT string_agg(DISTINCT concat_ws(' ', t.context ->> 'kind', s.name, e.db), ', ')
	  FROM dump.effects e JOIN tasker.workflow_steps s ON s.workflow_step_id = e.step_id
	  JOIN tasker.tasks t USING (task_id)
	 WHERE e.db = 'copy' AND t.context ->> 'kind' IN ('plain', 'abandoned', 'extretry')
	   AND s.name IN ('a', 'c')}),
	'', 'copy: what completed in origin did not run again');

foreach my $what ('step', 'task')
{
	is(transition_log_disagreements($node, 'copy', $what),
		'0', "copy: the $what transition log agrees with the final $what states");
}
is(state_counts_from_counters($node, 'copy'), state_counts_from_rows($node, 'copy'),
	'copy: the state counters agree with a count of the rows at the end');

SKIP:
{
	skip 'tasker.check_invariants() does not exist', 1
	  unless $node->safe_psql('copy',
		q{SELECT to_regproc('tasker.check_invariants') IS NOT NULL}) eq 't';
	is($node->safe_psql('copy', q{SELECT count(*) FROM tasker.check_invariants()}),
		'0', 'copy: tasker.check_invariants() finds nothing');
}

$node->stop('fast');
done_testing();
