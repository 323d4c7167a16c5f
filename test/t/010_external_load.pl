# 010_external_load.pl — correctness of the external-worker API under load.
#
# First, three generations of 600 fan tasks (ten independent roots) on a
# queue of their own, each generation deleted and vacuumed away before the
# next: 4 pgbench clients claim ten steps at a time (claims that start
# several tasks at once and race with each other), and each round's claimed
# steps are completed by one complete_steps call.  Then 2,000 tasks of a
# diamond template (a -> b, c -> d) are worked by 8 concurrent pgbench
# clients, each running one of two worker loops: claim one step, then fail
# it retryably (backoff 0) about one time in seven or complete it; or claim
# up to ten steps and complete them with one complete_steps call.  Claim
# and report are separate transactions, as in a real worker.  Everything is
# bounded by transaction counts and rounds.  Then: every task is complete;
# every step was completed exactly once, by its last attempt; the
# transition logs agree with the final states (the last transition's
# to_state is current_state, sort keys run 1..n without gaps, each
# transition starts where the previous one ended); no step was claimed
# before all its parents had completed; and no deadlock was logged.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use TaskerChecks;

my $tasks = 2000;
my $fans = 600;
my $all_tasks = $tasks + $fans;
my $all_steps = 4 * $tasks + 10 * $fans;
my $clients = 8;

my $node = PostgreSQL::Test::Cluster->new('external_load');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_connections = 40
max_worker_processes = 32
log_lock_waits = on
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
$node->safe_psql('postgres', q{
SELECT tasker.register_template('{
  "namespace": "load", "name": "diamond", "version": "1.0.0",
  "steps": [
    {"name": "a", "queue": "load", "max_attempts": 50},
    {"name": "b", "queue": "load", "max_attempts": 50, "depends_on": ["a"]},
    {"name": "c", "queue": "load", "max_attempts": 50, "depends_on": ["a"]},
    {"name": "d", "queue": "load", "max_attempts": 50, "depends_on": ["b", "c"]}
  ]}')});
$node->safe_psql('postgres', q{
SELECT tasker.register_template(jsonb_build_object(
  'namespace', 'load', 'name', 'fan', 'version', '1.0.0',
  'steps', (SELECT jsonb_agg(jsonb_build_object('name', 'r' || i, 'queue', 'load_fan', 'max_attempts', 50))
              FROM generate_series(1, 10) i)))});

# The worker loops.  A claim that finds nothing still sets the variables
# (coalesce), so the report statement turns into a no-op.  The single-step
# worker records the attempt and the parent names it was given as input.
my $dir = PostgreSQL::Test::Utils::tempdir;
my $single = "$dir/single.sql";
my $batch = "$dir/batch.sql";
PostgreSQL::Test::Utils::append_to_file($single, q{
SELECT coalesce(max(c.step_id), 0) AS sid, coalesce(max(c.attempt), 0) AS att,
       coalesce(max(d.deps), '-') AS deps
  FROM tasker.claim_steps('load', 'single-' || :client_id, 1, '5 minutes') c
  LEFT JOIN LATERAL (SELECT string_agg(k, '+' ORDER BY k COLLATE "C") AS deps
                       FROM jsonb_object_keys(c.input -> 'dependencies') k) d ON true \gset
\set roll random(1, 100)
SELECT CASE WHEN :sid = 0 THEN 'idle'
            WHEN :roll <= 15 THEN tasker.fail_step(:sid, :att, jsonb_build_object('message', 'flaky'), true, 0)
            ELSE tasker.complete_step(:sid, :att, jsonb_build_object(
                     'attempt', :att, 'deps', ':deps', 'worker', 'single-' || :client_id))::text
       END;
});
PostgreSQL::Test::Utils::append_to_file($batch, q{
SELECT count(*) AS n, coalesce(string_agg(step_id::text, ','), '0') AS ids,
       coalesce(string_agg(attempt::text, ','), '0') AS atts
  FROM tasker.claim_steps('load', 'batch-' || :client_id, 10, '5 minutes') \gset
SELECT CASE WHEN :n = 0 THEN 0
            ELSE tasker.complete_steps(ARRAY[:ids]::bigint[], ARRAY[:atts]::integer[],
                     (SELECT array_agg(jsonb_build_object('attempt', a, 'worker', 'batch-' || :client_id))
                        FROM unnest(ARRAY[:atts]::integer[]) a))
       END;
});

# Rounds of pgbench until every task of the queue is done (bounded: 60 rounds).
sub work_queue
{
	my ($queue, @scripts) = @_;
	my $unfinished = 1;
	my $rounds = 0;
	while ($unfinished > 0 && $rounds < 60)
	{
		$rounds++;
		$node->command_ok(
			[
				'pgbench', '-n', '-c', $clients, '-j', $clients, '-t', '250',
				(map { ('-f', $_) } @scripts), 'postgres'
			],
			"$queue: worker round $rounds");
		$unfinished = $node->safe_psql('postgres', qq{
			SELECT count(*) FROM tasker.workflow_steps
			 WHERE queue = '$queue' AND current_state <> 'complete'});
	}
	note "$queue: all steps done after $rounds pgbench rounds" if $unfinished == 0;
}
# The fans first: on a small tasks table whose physical order is not the
# order of the ids (three generations of fans, each deleted and vacuumed
# away before the next), 4 clients claim ten steps at a time, then the
# claimed steps are completed in one complete_steps call per round.
my $claim_fans = "$dir/claim_fans.sql";
PostgreSQL::Test::Utils::append_to_file($claim_fans, q{
SELECT count(*) FROM tasker.claim_steps('load_fan', 'fan-' || :client_id, 10, '5 minutes');
});
foreach my $generation (1, 2, 3)
{
	$node->safe_psql('postgres', q{
		DELETE FROM tasker.tasks;
		VACUUM ANALYZE tasker.tasks;
		VACUUM ANALYZE tasker.workflow_steps;}) if $generation > 1;
	is( $node->safe_psql('postgres', qq{
		SELECT count(tasker.create_task('load', 'fan', context => jsonb_build_object('n', g)))
		  FROM generate_series(1, $fans) g}),
		$fans, "$fans fan tasks created (generation $generation)");
	$node->safe_psql('postgres', 'ANALYZE');
	my $left = $fans * 10;
	for (my $round = 1; $left > 0 && $round <= 10; $round++)
	{
		$node->command_ok(
			[ 'pgbench', '-n', '-c', '4', '-j', '4', '-t', '100', '-f', $claim_fans, 'postgres' ],
			"fans, generation $generation: claim round $round");
		$node->safe_psql('postgres', q{
			SELECT tasker.complete_steps(array_agg(workflow_step_id), array_agg(attempts),
			                             array_agg(jsonb_build_object('attempt', attempts, 'worker', 'batch-fan')))
			  FROM tasker.workflow_steps WHERE queue = 'load_fan' AND current_state = 'in_progress'});
		$left = $node->safe_psql('postgres', q{
			SELECT count(*) FROM tasker.workflow_steps
			 WHERE queue = 'load_fan' AND current_state <> 'complete'});
	}
	is($left, '0', "fans, generation $generation: every step completed");
}

is( $node->safe_psql('postgres', qq{
	SELECT count(tasker.create_task('load', 'diamond', context => jsonb_build_object('n', g)))
	  FROM generate_series(1, $tasks) g}),
	$tasks, "$tasks diamond tasks created");
work_queue('load', "$single\@3", "$batch\@1");


is( $node->safe_psql('postgres', q{
	SELECT current_state, count(*) FROM tasker.tasks GROUP BY 1 ORDER BY 1}),
	"complete|$all_tasks", 'every task is complete');
is( $node->safe_psql('postgres', q{
	SELECT current_state, count(*) FROM tasker.workflow_steps GROUP BY 1 ORDER BY 1}),
	"complete|$all_steps", 'every step is complete');

# The load took both paths: retries happened, and both worker loops completed steps.
my ($retries, $by_batch, $by_single) = split /\|/, $node->safe_psql('postgres', q{
	SELECT sum(attempts - 1), count(*) FILTER (WHERE results ->> 'worker' LIKE 'batch-%'),
	       count(*) FILTER (WHERE results ->> 'worker' LIKE 'single-%')
	  FROM tasker.workflow_steps});
note "retried attempts: $retries, completed by batch: $by_batch, by single: $by_single";
ok($retries > 0, 'some attempts failed and were retried');
ok($by_batch > 0 && $by_single > 0, 'both worker loops completed steps');

# Exactly one completion per step, by its last attempt: one transition to
# complete (recording that attempt), one claim per attempt, a retryable
# failure for each attempt but the last, and the results that attempt sent.
is( $node->safe_psql('postgres', q{
	WITH per_step AS (
	    SELECT tr.task_id, tr.workflow_step_id,
	           count(*) FILTER (WHERE tr.to_state = 'complete') AS completions,
	           max((tr.metadata ->> 'attempt')::integer) FILTER (WHERE tr.to_state = 'complete') AS completed_attempt,
	           count(*) FILTER (WHERE tr.to_state = 'in_progress') AS claims,
	           count(*) FILTER (WHERE tr.to_state = 'waiting_for_retry') AS failures
	      FROM tasker.workflow_step_transitions tr GROUP BY 1, 2)
	SELECT count(*)
	  FROM tasker.workflow_steps s LEFT JOIN per_step p USING (task_id, workflow_step_id)
	 WHERE p.completions IS DISTINCT FROM 1
	    OR p.completed_attempt IS DISTINCT FROM s.attempts
	    OR p.claims IS DISTINCT FROM s.attempts::bigint
	    OR p.failures IS DISTINCT FROM s.attempts - 1::bigint
	    OR (s.results ->> 'attempt')::integer IS DISTINCT FROM s.attempts
	    OR s.pending_parents <> 0 OR s.lease_expires_at IS NOT NULL}),
	'0', 'every step completed exactly once, by its last attempt');

# What a worker was given: the results of exactly its parents.
is( $node->safe_psql('postgres', q{
	SELECT name, results ->> 'deps', count(*) FROM tasker.workflow_steps
	 WHERE results ->> 'worker' LIKE 'single-%' GROUP BY 1, 2 ORDER BY name COLLATE "C", 2}) =~ s/\|\d+$//mgr,
	"a|-\nb|a\nc|a\nd|b+c",
	'each step got its parents as dependencies');

# The transition logs agree with the final states.
foreach my $what ('step', 'task')
{
	is(transition_log_disagreements($node, 'postgres', $what),
		'0', "the $what transition log agrees with the final $what states");
}

# No step was claimed before all its parents completed: a claim's transition
# is written after the snapshot that saw the parent's completion committed,
# so its id is greater than the id of the parent's completion.  (created_at
# is the transaction's start time, which may precede that snapshot.)
is( $node->safe_psql('postgres', q{
	SELECT count(*)
	  FROM tasker.workflow_step_edges e
	  JOIN tasker.workflow_step_transitions claim
	    ON claim.task_id = e.task_id AND claim.workflow_step_id = e.to_step_id
	   AND claim.to_state = 'in_progress'
	  LEFT JOIN tasker.workflow_step_transitions done
	    ON done.task_id = e.task_id AND done.workflow_step_id = e.from_step_id
	   AND done.to_state = 'complete'
	 WHERE done.workflow_step_transition_id IS NULL
	    OR claim.workflow_step_transition_id < done.workflow_step_transition_id}),
	'0', 'no step was claimed before its parents completed');
is( $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM tasker.workflow_step_edges e
	          JOIN tasker.workflow_step_transitions claim
	            ON claim.task_id = e.task_id AND claim.workflow_step_id = e.to_step_id
	           AND claim.to_state = 'in_progress')
	     = (SELECT sum(s.attempts * (SELECT count(*) FROM tasker.workflow_step_edges e
	                                  WHERE e.task_id = s.task_id AND e.to_step_id = s.workflow_step_id))
	          FROM tasker.workflow_steps s)}),
	't', 'every claim of a child was checked against each of its parents');

my $log = slurp_file($node->logfile);
unlike($log, qr/deadlock detected/, 'no deadlocks');

$node->stop;
done_testing();
