# TaskerChecks.pm — checks several TAP tests make of what tasker left in a
# database, written once.  (test/ is on prove's include path: see the
# Makefile's check-tap.)
package TaskerChecks;

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(transition_log_disagreements state_counts_from_counters state_counts_from_rows);

my %logs = (
	step => [ 'tasker.workflow_step_transitions', 'tasker.workflow_steps', 'task_id, workflow_step_id' ],
	task => [ 'tasker.task_transitions', 'tasker.tasks', 'task_id' ]);

# transition_log_disagreements($node, $dbname, 'step' | 'task') counts the
# rows whose transition log does not tell how they got to where they are:
# its sort keys are not 1..n, the row does not count n transitions, the log
# does not end in the current state, a move does not start where the one
# before it ended (the first where rows start, pending), or a row that was
# never moved claims to have been.  Computed from the rows alone, not with
# tasker.check_invariants(), so that it also checks that function's work.
sub transition_log_disagreements
{
	my ($node, $dbname, $what) = @_;
	my ($transitions, $rows, $key) = @{ $logs{$what} or die "no $what transition log" };
	return $node->safe_psql($dbname, qq{
		WITH ordered AS (
		    SELECT $key, sort_key, from_state, to_state,
		           lag(to_state) OVER w AS previous_to_state,
		           row_number() OVER w AS position,
		           count(*) OVER (PARTITION BY $key) AS n,
		           last_value(to_state) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS last_to_state
		      FROM $transitions WINDOW w AS (PARTITION BY $key ORDER BY sort_key))
		SELECT count(*) FROM $rows r LEFT JOIN ordered o USING ($key)
		 WHERE CASE WHEN o.sort_key IS NULL THEN r.transitions <> 0   -- never moved
		            ELSE o.sort_key <> o.position                     -- 1..n, no gaps, no repeats
		              OR o.n <> r.transitions                         -- the row counts them
		              OR o.last_to_state <> r.current_state           -- ends in the current state
		              OR o.from_state IS DISTINCT FROM coalesce(o.previous_to_state, 'pending') END});
}

# state_counts_from_counters($node, $dbname) is what the maintained state
# counters say (system_health_counts), state_counts_from_rows($node,
# $dbname) the same figures counted from the rows: equal strings when the
# counters are right.
sub state_counts_from_counters
{
	my ($node, $dbname) = @_;
	return $node->safe_psql($dbname, q{
		SELECT concat_ws(' ', h.pending_tasks, h.in_progress_tasks, h.complete_tasks, h.error_tasks,
		                 h.pending_steps, h.in_progress_steps, h.retryable_error_steps,
		                 h.complete_steps, h.error_steps, h.exhausted_retry_steps)
		  FROM tasker.system_health_counts() h});
}

sub state_counts_from_rows
{
	my ($node, $dbname) = @_;
	return $node->safe_psql($dbname, q{
		SELECT concat_ws(' ', t.pending, t.in_progress, t.complete, t.error,
		                 s.pending, s.in_progress, s.waiting, s.complete, s.error, s.exhausted)
		  FROM (SELECT count(*) FILTER (WHERE current_state = 'pending') AS pending,
		               count(*) FILTER (WHERE current_state = 'in_progress') AS in_progress,
		               count(*) FILTER (WHERE current_state = 'complete') AS complete,
		               count(*) FILTER (WHERE current_state = 'error') AS error
		          FROM tasker.tasks) t,
		       (SELECT count(*) FILTER (WHERE current_state = 'pending') AS pending,
		               count(*) FILTER (WHERE current_state = 'in_progress') AS in_progress,
		               count(*) FILTER (WHERE current_state = 'waiting_for_retry') AS waiting,
		               count(*) FILTER (WHERE current_state = 'complete') AS complete,
		               count(*) FILTER (WHERE current_state = 'error') AS error,
		               count(*) FILTER (WHERE current_state = 'error' AND attempts >= max_attempts) AS exhausted
		          FROM tasker.workflow_steps) s});
}

1;
