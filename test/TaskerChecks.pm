# TaskerChecks.pm — checks several TAP tests make of what tasker left in a
# database, written once.  (test/ is on prove's include path: see the
# Makefile's check-tap.)
package TaskerChecks;

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(transition_log_disagreements);

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

1;
