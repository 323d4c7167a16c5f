# 026_no_preload.pl — tasker without shared_preload_libraries.
#
# The library is then loaded by the first session that calls it: no shared
# memory, no background workers.  CREATE EXTENSION works (its call to wake
# the launcher does nothing), external workers claim and complete steps,
# SQL-handler steps simply wait (nothing runs them), tasker.workers is
# empty, tasker.concurrency() still answers, DROP EXTENSION works, and the
# log holds no error, warning or FATAL.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
# A tasker setting in the file before the library is known: a placeholder
# until a session loads tasker.
$node->append_conf('postgresql.conf', qq{
tasker.poll_interval = 100ms
});
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'tasker is not preloaded');
$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA np;
CREATE FUNCTION np.noop(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker.register_template('{
  "namespace": "np", "name": "mixed", "version": "1.0.0",
  "steps": [
    {"name": "ext", "queue": "np"},
    {"name": "sql", "handler": "np.noop(jsonb)", "depends_on": ["ext"]}
  ]}');
});
is($node->safe_psql('postgres', q{SELECT extversion IS NOT NULL FROM pg_extension WHERE extname = 'tasker'}),
	't', 'CREATE EXTENSION works without preload');

my $task_id = $node->safe_psql('postgres', q{SELECT tasker.create_task('np', 'mixed')});
ok($task_id =~ /^\d+$/, 'create_task works');

# Each safe_psql is a new session: the library loads on first use.
my ($step_id, $attempt) = split /\|/, $node->safe_psql('postgres',
	q{SELECT step_id, attempt FROM tasker.claim_steps('np', 'outside', 5)});
is( $node->safe_psql('postgres', qq{
	SELECT name, current_state, claimed_by FROM tasker.workflow_steps WHERE workflow_step_id = $step_id}),
	'ext|in_progress|outside', 'claim_steps works');
is($node->safe_psql('postgres', "SELECT tasker.complete_step($step_id, $attempt, '{\"ok\": true}')"),
	't', 'complete_step works');
is( $node->safe_psql('postgres', qq{
	SELECT string_agg(name || ':' || current_state || ':' || pending_parents, ',' ORDER BY workflow_step_id)
	  FROM tasker.workflow_steps WHERE task_id = $task_id}),
	'ext:complete:0,sql:pending:0', 'the SQL step is ready and waits: nothing runs it');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM tasker.claim_steps('np', 'outside', 5)}),
	'0', 'an external claim never takes a SQL-handler step');

is($node->safe_psql('postgres', 'SELECT count(*) FROM tasker.workers'), '0', 'tasker.workers is empty');
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'tasker%' OR application_name LIKE 'tasker%'}),
	'0', 'no tasker process runs');
is( $node->safe_psql('postgres', q{
	SELECT concurrency BETWEEN min_concurrent_steps AND max_concurrent_steps FROM tasker.concurrency(true)}),
	't', 'tasker.concurrency() answers');
is( $node->safe_psql('postgres', q{LOAD 'tasker'; SHOW tasker.poll_interval}),
	'100ms', 'the setting from postgresql.conf applies once the library is loaded');

$node->safe_psql('postgres', 'DROP EXTENSION tasker');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_extension WHERE extname = 'tasker'}),
	'0', 'DROP EXTENSION works');

my @complaints = grep { /\b(WARNING|ERROR|FATAL|PANIC):/ } split /\n/, slurp_file($node->logfile);
is(join("\n", @complaints), '', 'no error, warning or FATAL in the log');

$node->stop;
done_testing();
