# 050_random_kill9.pl — kill -9 of a random postmaster child, ten times,
# while a mixed workload runs.
#
# The template mixes in-database steps (a SQL handler whose side effect is a
# row keyed by its step id, committed with the step's completion) and
# external steps (worked by a background pgbench loop that claims a step
# with a short lease, records the work in one transaction, then records
# what complete_step returned in the transaction that calls it):
#
#     a (sql) -> b (external), c (sql) -> d (sql) -> e (external)
#
# One task in twelve is doomed (c fails for good: the task ends in error
# once b is done, d and e never run); one in five is flaky (each SQL step's
# first attempt writes its row, then raises: the row is rolled back).
# Another pgbench client creates tasks at a steady pace.  Ten times (seeded:
# TASKER_CHAOS_SEED), after a random pause, the test kills with SIGKILL one
# process picked at random among the executors, the dispatcher, the
# launcher and the client backends of the workload; the postmaster restarts
# every process, the test waits for it, and the workload starts again.
# Afterwards the workers finish every task, and then:
# - every task is complete, or in error when it was doomed (with c in error
#   and d, e never started);
# - every in-database step's row exists exactly once when it completed,
#   never when it did not, written by the attempt that completed;
# - every external step that completed was worked at least once, and
#   complete_step returned true exactly once for it, for that attempt;
# - the transition logs agree with the final states, no step is left in
#   progress or leased, the maintained state counters agree with a count,
#   and tasker.check_invariants() (when it exists) finds nothing;
# - the log shows ten crash restarts, one per kill.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use TaskerChecks;
use Time::HiRes qw(sleep time);

my $seed = $ENV{TASKER_CHAOS_SEED} // 5042;
my $kills = 10;
srand($seed);
note "seed $seed";

my $node = PostgreSQL::Test::Cluster->new('random_kill9');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_connections = 40
max_worker_processes = 32
restart_after_crash = on
tasker.poll_interval = 100ms
tasker.backoff_base = 0
tasker.max_executors = 4
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA chaos;
-- in-database side effects: one row per step that completed
CREATE TABLE chaos.effects (step_id bigint NOT NULL, attempt integer NOT NULL);
-- external work (at least once) and what complete_step returned
CREATE TABLE chaos.ext_work (step_id bigint NOT NULL, attempt integer NOT NULL);
CREATE TABLE chaos.ext_done (step_id bigint NOT NULL, attempt integer NOT NULL, accepted boolean);
CREATE FUNCTION chaos.work(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    attempt integer := (input ->> 'attempt')::integer;
BEGIN
    PERFORM pg_sleep(random() * 0.02);           -- kills often land mid-step
    INSERT INTO chaos.effects VALUES ((input ->> 'step_id')::bigint, attempt);
    IF input ->> 'step_name' = 'c' AND (input #>> '{context,doomed}')::boolean THEN
        PERFORM tasker.fail_permanently('doomed by design');
    END IF;
    IF attempt = 1 AND (input #>> '{context,flaky}')::boolean THEN
        RAISE EXCEPTION 'flaky first attempt';
    END IF;
    RETURN jsonb_build_object('attempt', attempt);
END $$;
SELECT tasker.register_template('{
  "namespace": "chaos", "name": "mixed", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "chaos.work(jsonb)", "max_attempts": 50},
    {"name": "b", "queue": "chaos_ext", "depends_on": ["a"], "max_attempts": 50},
    {"name": "c", "handler": "chaos.work(jsonb)", "depends_on": ["a"], "max_attempts": 50},
    {"name": "d", "handler": "chaos.work(jsonb)", "depends_on": ["b", "c"], "max_attempts": 50},
    {"name": "e", "queue": "chaos_ext", "depends_on": ["d"], "max_attempts": 50}
  ]}');
});

my $dir = PostgreSQL::Test::Utils::tempdir;
my $create_script = "$dir/create.sql";
my $work_script = "$dir/work.sql";
PostgreSQL::Test::Utils::append_to_file($create_script, q{
\set r random(1, 60)
SELECT tasker.create_task('chaos', 'mixed',
           context => jsonb_build_object('doomed', :r <= 5, 'flaky', :r > 48));
\sleep 40 ms
});
# The external worker: claim (lease 3 s), do the work (recorded in a
# transaction of its own: at least once), complete and record the answer.
PostgreSQL::Test::Utils::append_to_file($work_script, q{
SELECT coalesce(max(step_id), 0) AS sid, coalesce(max(attempt), 0) AS att
  FROM tasker.claim_steps('chaos_ext', 'ext-' || :client_id, 1, '3 seconds') \gset
\if :sid
INSERT INTO chaos.ext_work VALUES (:sid, :att);
INSERT INTO chaos.ext_done
SELECT :sid, :att, tasker.complete_step(:sid, :att, jsonb_build_object('attempt', :att));
\else
\sleep 20 ms
\endif
});

my @running;

# start_workload starts the task creator (unless only draining) and two
# external workers as background pgbench runs.
sub start_workload
{
	my ($create) = @_;
	my @conn = ('-h', $node->host, '-p', $node->port, 'postgres');
	my $seed_arg = '--random-seed=' . int(rand(1_000_000));
	local $ENV{PGAPPNAME} = 'chaos workload';
	push @running, IPC::Run::start(
		[ 'pgbench', '-n', '-c', '1', '-T', '300', $seed_arg, '-f', $create_script, @conn ],
		'>', '/dev/null', '2>>', "$dir/create.log") if $create;
	push @running, IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '300', $seed_arg, '-f', $work_script, @conn ],
		'>', '/dev/null', '2>>', "$dir/work.log");
}

sub stop_workload
{
	foreach my $h (@running)
	{
		$h->signal('TERM') if $h->pumpable;
		eval { $h->finish; };
		eval { $h->kill_kill; } if $@;
	}
	@running = ();
}

# wait_ready waits until the server accepts connections again.
sub wait_ready
{
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my ($ret) = $node->psql('postgres', 'SELECT 1');
		return 1 if $ret == 0;
		sleep 0.1;
	}
	return 0;
}

# The victims, by kind: the pids of each kind the test may kill.
my %kinds = (
	executor => q{backend_type = 'tasker executor'},
	dispatcher => q{backend_type = 'tasker dispatcher'},
	launcher => q{backend_type = 'tasker launcher'},
	client => q{backend_type = 'client backend' AND application_name = 'chaos workload'});
my @kind_names = sort keys %kinds;
# every kind at least twice, in a seeded random order
my @plan = (@kind_names, @kind_names, map { $kind_names[ int(rand(@kind_names)) ] } 1 .. $kills - 2 * @kind_names);
for (my $i = $#plan; $i > 0; $i--)
{
	my $j = int(rand($i + 1));
	@plan[ $i, $j ] = @plan[ $j, $i ];
}
my %killed;

for my $round (1 .. $kills)
{
	start_workload(1);
	sleep(0.5 + rand(2.0));

	# the planned kind; when it has no process right now, the next one
	my ($first) = grep { $kind_names[$_] eq $plan[ $round - 1 ] } 0 .. $#kind_names;
	my ($kind, $pid);
	for my $i (0 .. $#kind_names)
	{
		$kind = $kind_names[ ($first + $i) % @kind_names ];
		my @pids = split /\n/, $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE $kinds{$kind} ORDER BY pid");
		if (@pids)
		{
			$pid = $pids[ int(rand(@pids)) ];
			last;
		}
		note "round $round: no $kind to kill";
	}
	my $offset = -s $node->logfile;
	ok(kill('KILL', $pid), "round $round: $kind $pid killed with SIGKILL");
	$killed{$kind}++;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	stop_workload();
	ok(wait_ready(), "round $round: the server is back");
}
note 'kills by kind: ' . join(', ', map { "$_ $killed{$_}" } sort keys %killed);

my $log = slurp_file($node->logfile);
my $restarts = () = $log =~ /all server processes terminated; reinitializing/g;
my $signal9 = () = $log =~ /\(PID \d+\) was terminated by signal 9/g;
is($restarts, $kills, "$kills crash restarts");
is($signal9, $kills, 'each one after a process killed with signal 9');

# Drain: the external workers again, until no task is unfinished.
start_workload(0);
my $deadline = time + 120;
my $unfinished;
while (time < $deadline)
{
	$unfinished = $node->safe_psql('postgres', q{
		SELECT count(*) FROM tasker.tasks WHERE current_state NOT IN ('complete', 'error')});
	last if $unfinished == 0;
	sleep 0.2;
}
stop_workload();
is($unfinished, '0', 'every task finished after the last recovery');

my ($tasks, $doomed, $lost, $reaped) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM tasker.tasks),
	       (SELECT count(*) FROM tasker.tasks WHERE (context ->> 'doomed')::boolean),
	       (SELECT count(*) FROM tasker.workflow_step_transitions WHERE metadata ->> 'cause' = 'executor_lost'),
	       (SELECT count(*) FROM tasker.workflow_step_transitions WHERE metadata ->> 'cause' = 'lease_expired')});
note "tasks: $tasks (doomed: $doomed); attempts lost with an executor: $lost; leases expired: $reaped";
ok($tasks > 100, 'the workload created tasks throughout');

is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.tasks t
	 WHERE t.current_state <> CASE WHEN (t.context ->> 'doomed')::boolean THEN 'error' ELSE 'complete' END}),
	'0', 'every task is complete, or in error when doomed');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
	 WHERE s.current_state <> CASE
	         WHEN NOT (t.context ->> 'doomed')::boolean THEN 'complete'
	         WHEN s.name IN ('a', 'b') THEN 'complete'
	         WHEN s.name = 'c' THEN 'error'
	         ELSE 'pending' END
	    OR (s.name = 'c' AND s.current_state = 'error'
	        AND (s.error ->> 'sqlstate' IS DISTINCT FROM 'TK001' OR s.attempts > s.max_attempts))
	    OR (s.current_state = 'pending' AND s.attempts <> 0)}),
	'0', 'doomed tasks: a and b complete, c failed for good, d and e never started');

# In-database steps: exactly once.
is( $node->safe_psql('postgres', q{
	SELECT count(*)
	  FROM tasker.workflow_steps s
	  LEFT JOIN (SELECT step_id, count(*) AS n, max(attempt) AS attempt
	               FROM chaos.effects GROUP BY step_id) e ON e.step_id = s.workflow_step_id
	 WHERE s.handler IS NOT NULL
	   AND (coalesce(e.n, 0) <> CASE WHEN s.current_state = 'complete' THEN 1 ELSE 0 END
	        OR (s.current_state = 'complete' AND e.attempt <> s.attempts))}),
	'0', 'every in-database step\'s row exists once when it completed (by that attempt), never otherwise');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM chaos.effects e
	 WHERE NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s
	                    WHERE s.workflow_step_id = e.step_id AND s.current_state = 'complete')}),
	'0', 'no stray rows');

# External steps: worked at least once, accepted exactly once.
is( $node->safe_psql('postgres', q{
	SELECT count(*)
	  FROM tasker.workflow_steps s
	  LEFT JOIN (SELECT step_id, count(*) AS n FROM chaos.ext_work GROUP BY 1) w
	         ON w.step_id = s.workflow_step_id
	  LEFT JOIN (SELECT step_id, count(*) AS n, max(attempt) AS attempt
	               FROM chaos.ext_done WHERE accepted GROUP BY 1) d
	         ON d.step_id = s.workflow_step_id
	 WHERE s.handler IS NULL
	   AND CASE WHEN s.current_state = 'complete'
	            THEN coalesce(w.n, 0) = 0 OR d.n IS DISTINCT FROM 1 OR d.attempt <> s.attempts
	                 OR (s.results ->> 'attempt')::integer <> s.attempts
	            ELSE d.n IS NOT NULL END}),
	'0', 'every external step that completed was worked at least once and accepted exactly once');
my ($ext_steps, $ext_work, $ext_stale) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM tasker.workflow_steps WHERE handler IS NULL AND current_state = 'complete'),
	       (SELECT count(*) FROM chaos.ext_work),
	       (SELECT count(*) FROM chaos.ext_done WHERE NOT accepted)});
note "external steps completed: $ext_steps; worked: $ext_work times; stale completions refused: $ext_stale";

is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker.workflow_steps
	 WHERE current_state IN ('in_progress', 'waiting_for_retry') OR lease_expires_at IS NOT NULL}),
	'0', 'no step left in progress, backing off or leased');

# The transition logs agree with the final states.
foreach my $what ('step', 'task')
{
	is(transition_log_disagreements($node, 'postgres', $what),
		'0', "the $what transition log agrees with the final $what states");
}

# The maintained counters survived the crashes.
is(state_counts_from_counters($node, 'postgres'), state_counts_from_rows($node, 'postgres'),
	'the state counters agree with a count of the rows');

SKIP:
{
	skip 'tasker.check_invariants() does not exist', 1
	  unless $node->safe_psql('postgres',
		q{SELECT to_regproc('tasker.check_invariants') IS NOT NULL}) eq 't';
	is($node->safe_psql('postgres', q{SELECT count(*) FROM tasker.check_invariants()}),
		'0', 'tasker.check_invariants() finds nothing');
}

$log = slurp_file($node->logfile);
unlike($log, qr/PANIC/, 'no PANIC');
$node->stop;
done_testing();
