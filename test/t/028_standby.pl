# 028_standby.pl — nothing runs on a standby; a promoted standby serves.
#
# The primary has tasker with dispatch off, and tasks whose SQL steps wait.
# A streaming standby, with tasker preloaded and dispatch on, replays them
# but runs no tasker worker at all (the launcher starts only once recovery
# is finished).  Promoted, it starts its launcher and a dispatcher, and the
# waiting tasks complete there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tasks = 5;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
tasker.enabled = off
});
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE FUNCTION public.noop(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ran": true}'::jsonb $$;
SELECT tasker.register_template('{
  "namespace": "sb", "name": "pair", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "public.noop(jsonb)"},
    {"name": "b", "handler": "public.noop(jsonb)", "depends_on": ["a"]}
  ]}');
});
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->adjust_conf('postgresql.conf', 'tasker.enabled', 'on');
$standby->start;

# Tasks created on the primary after the backup reach the standby.
$primary->safe_psql('postgres', qq{
	SELECT count(tasker.create_task('sb', 'pair', context => jsonb_build_object('n', g)))
	  FROM generate_series(1, $tasks) g});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is( $standby->safe_psql('postgres', q{
	SELECT current_state, count(*) FROM tasker.workflow_steps GROUP BY 1}),
	'pending|' . 2 * $tasks, 'the standby has the waiting steps');
is( $standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'tasker %'}),
	'0', 'no tasker worker runs on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM tasker.workers'), '0',
	'tasker.workers is empty on the standby');

# Promoted, it serves the database.
$standby->promote;
ok( $standby->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tasker dispatcher'}),
	'the promoted standby starts a dispatcher');
ok( $standby->poll_query_until('postgres', q{
	SELECT bool_and(current_state = 'complete') FROM tasker.tasks}),
	'the tasks complete on the promoted standby');
is( $standby->safe_psql('postgres', q{
	SELECT count(*), bool_and(attempts = 1 AND results ->> 'ran' = 'true') FROM tasker.workflow_steps}),
	2 * $tasks . '|t', 'every step ran once there');

$standby->stop;
$primary->stop;
done_testing();
