# 055_analyze_on_growth.pl — the dispatcher analyzes tasker's tables when
# workflow_steps holds more than twice the rows its statistics count.
#
# Cached plans are replanned only when statistics change; a claim planned
# on an empty workflow_steps reads whole indexes until someone analyzes it.
# Autovacuum is off here, so every analysis seen is the dispatcher's: one
# as the table grows from empty, none while it keeps its rows, again after
# it was emptied (DELETE and VACUUM) and filled again, and again when it is
# refilled in place — the same pages — after a VACUUM that counted it empty.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('analyze_on_growth');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
autovacuum = off
tasker.poll_interval = 100ms
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
SELECT tasker.register_template('{
  "namespace": "growth", "name": "pair", "version": "1.0.0",
  "steps": [{"name": "a"}, {"name": "b", "depends_on": ["a"]}]}');
});

sub analyses
{
	return $node->safe_psql('postgres', q{
		SELECT string_agg(relname || '=' || analyze_count, ' ' ORDER BY relname)
		  FROM pg_stat_user_tables
		 WHERE schemaname = 'tasker'
		   AND relname IN ('workflow_steps', 'tasks', 'workflow_step_edges')});
}

sub steps_analyzed
{
	return $node->safe_psql('postgres', q{
		SELECT analyze_count FROM pg_stat_user_tables
		 WHERE schemaname = 'tasker' AND relname = 'workflow_steps'});
}

# the dispatcher has looked at the empty table
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'tasker dispatcher'})
  or die 'no dispatcher';
sleep 1;
is(analyses(), 'tasks=0 workflow_step_edges=0 workflow_steps=0',
	'nothing analyzed while the tables are empty');

# 2,000 tasks of two steps: a few hundred pages of workflow_steps
$node->safe_psql('postgres',
	q{SELECT count(tasker.create_task('growth', 'pair')) FROM generate_series(1, 2000)});
# (an analysis that ran before the rows committed found none, and is retried)
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_stats WHERE schemaname = 'tasker' AND tablename = 'workflow_steps'}),
	'the dispatcher analyzed workflow_steps once it had grown: the planner has its statistics');
like(analyses(), qr/^tasks=[1-9]\d* workflow_step_edges=[1-9]\d* workflow_steps=[1-9]\d*$/,
	'tasks, workflow_steps and workflow_step_edges were analyzed together');

# the size is steady: no more analyses, however many rounds go by
my $after_growth = steps_analyzed();
sleep 2;
is(steps_analyzed(), $after_growth, 'no analysis while the table keeps its size');

# emptied and filled again: analyzed again
$node->safe_psql('postgres', 'DELETE FROM tasker.tasks');
$node->safe_psql('postgres', 'VACUUM tasker.workflow_steps, tasker.tasks, tasker.workflow_step_edges');
sleep 1;    # the dispatcher sees the truncated table
$node->safe_psql('postgres',
	q{SELECT count(tasker.create_task('growth', 'pair')) FROM generate_series(1, 2000)});
ok($node->poll_query_until('postgres',
		qq{SELECT analyze_count > $after_growth FROM pg_stat_user_tables
		   WHERE schemaname = 'tasker' AND relname = 'workflow_steps'}),
	'analyzed again after the table was emptied and filled');

# emptied, vacuumed without truncation (the statistics now say: no rows),
# refilled in the same pages: its size says nothing, its rows do
sleep 2;    # (an analysis of the last refill that found it half-written is retried)
my $before_refill = steps_analyzed();
$node->safe_psql('postgres', 'DELETE FROM tasker.tasks');
$node->safe_psql('postgres',
	'VACUUM (TRUNCATE false) tasker.workflow_steps, tasker.tasks, tasker.workflow_step_edges');
my $pages_empty = $node->safe_psql('postgres',
	q{SELECT pg_relation_size('tasker.workflow_steps')});
is($node->safe_psql('postgres',
		q{SELECT reltuples FROM pg_class WHERE oid = 'tasker.workflow_steps'::regclass}),
	'0', 'after the VACUUM the statistics count no rows');
$node->safe_psql('postgres',
	q{SELECT count(tasker.create_task('growth', 'pair')) FROM generate_series(1, 2000)});
cmp_ok($node->safe_psql('postgres', q{SELECT pg_relation_size('tasker.workflow_steps')}),
	'<=', $pages_empty, 'the refill reused the pages: the table did not grow');
ok($node->poll_query_until('postgres',
		qq{SELECT analyze_count > $before_refill FROM pg_stat_user_tables
		   WHERE schemaname = 'tasker' AND relname = 'workflow_steps'}),
	'analyzed again after the table was refilled in place');
diag('workflow_steps analyzed ' . steps_analyzed() . " times, $before_refill before the refill");
cmp_ok($node->safe_psql('postgres',
		q{SELECT reltuples FROM pg_class WHERE oid = 'tasker.workflow_steps'::regclass}),
	'>=', 3000, 'the statistics count the refilled rows');

$node->stop;
done_testing();
