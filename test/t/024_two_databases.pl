# 024_two_databases.pl — every database with tasker is served, each by its
# own dispatcher; CREATE EXTENSION and DROP EXTENSION start and stop one.
#
# alpha and beta both have tasker: tasks complete in both, each step run by
# an executor of its own database, and tasker.workers lists one dispatcher
# per database (none for postgres, which has no tasker).  In gamma, a
# dispatcher appears within a few seconds of CREATE EXTENSION, goes away at
# DROP EXTENSION (with its executors), and comes back with CREATE
# EXTENSION; alpha's dispatcher is not disturbed by any of it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tasks = 20;

my $node = PostgreSQL::Test::Cluster->new('two_databases');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
});
$node->start;

my $setup = q{
CREATE EXTENSION tasker;
CREATE SCHEMA two;
CREATE TABLE two.writes (task_id bigint, step text, db name, pid integer);
CREATE FUNCTION two.write(input jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO two.writes VALUES ((input ->> 'task_id')::bigint, input ->> 'step_name',
                                   current_database(), pg_backend_pid())
    RETURNING jsonb_build_object('db', db)
$$;
SELECT tasker.register_template('{
  "namespace": "two", "name": "diamond", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "two.write(jsonb)"},
    {"name": "b", "handler": "two.write(jsonb)", "depends_on": ["a"]},
    {"name": "c", "handler": "two.write(jsonb)", "depends_on": ["a"]},
    {"name": "d", "handler": "two.write(jsonb)", "depends_on": ["b", "c"]}
  ]}');
};

# dispatcher returns the pid of the database's dispatcher ('' when none).
sub dispatcher
{
	my ($db) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker dispatcher' AND datname = '$db'});
}

# run_tasks creates tasks in the database and checks they all complete,
# each step in the database's own executors, once.
sub run_tasks
{
	my ($db, $n) = @_;
	my $first = $node->safe_psql($db, qq{
		SELECT min(tasker.create_task('two', 'diamond', context => jsonb_build_object('n', g)))
		  FROM generate_series(1, $n) g});
	ok( $node->poll_query_until($db, qq{
		SELECT count(*) = $n FROM tasker.tasks WHERE task_id >= $first AND current_state = 'complete'}),
		"$db: $n tasks complete");
	is( $node->safe_psql($db, qq{
		SELECT count(*), count(DISTINCT (w.task_id, w.step)),
		       bool_and(w.db = '$db' AND s.results ->> 'db' = '$db'
		                AND s.claimed_by = 'tasker executor ' || w.pid)
		  FROM two.writes w
		  JOIN tasker.workflow_steps s ON s.task_id = w.task_id AND s.name = w.step
		 WHERE w.task_id >= $first}),
		4 * $n . '|' . 4 * $n . '|t', "$db: every step ran once, in an executor of $db");
}

foreach my $db ('alpha', 'beta')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, $setup);
}
run_tasks('alpha', $tasks);
run_tasks('beta', $tasks);
is( $node->safe_psql('alpha', q{
	SELECT string_agg(database, ',' ORDER BY database) FROM tasker.workers WHERE kind = 'dispatcher'}),
	'alpha,beta', 'tasker.workers: one dispatcher in each database with tasker, none elsewhere');
is( $node->safe_psql('alpha', q{
	SELECT count(*) FROM tasker.workers w JOIN pg_stat_activity a USING (pid)
	 WHERE w.kind = 'executor' AND (a.datname IS DISTINCT FROM w.database
	                                OR a.backend_type <> 'tasker executor')}),
	'0', 'tasker.workers names each executor\'s database as pg_stat_activity does');
my $alpha_dispatcher = dispatcher('alpha');

# gamma: CREATE EXTENSION brings a dispatcher within a few seconds (the
# launcher is woken at commit; without that it would look again after 10 s).
$node->safe_psql('postgres', 'CREATE DATABASE gamma');
$node->safe_psql('gamma', $setup);
{
	local $PostgreSQL::Test::Utils::timeout_default = 8;
	ok( $node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tasker dispatcher' AND datname = 'gamma'}),
		'gamma: a dispatcher within 8 s of CREATE EXTENSION');
}
run_tasks('gamma', 5);
ok($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tasker executor' AND datname = 'gamma'}) > 0,
	'gamma has executors');

# DROP EXTENSION: gamma's dispatcher and executors go away.
my $log_offset = -s $node->logfile;
$node->safe_psql('gamma', 'DROP EXTENSION tasker');
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type LIKE 'tasker %' AND datname = 'gamma'}),
	'gamma: no tasker worker after DROP EXTENSION');
like(slurp_file($node->logfile, $log_offset), qr/tasker dispatcher stopping: extension dropped/,
	'the dispatcher said why it stopped');

# alpha carries on, under the same dispatcher.
run_tasks('alpha', 5);
is(dispatcher('alpha'), $alpha_dispatcher, 'alpha kept its dispatcher throughout');

# CREATE EXTENSION again: gamma is served again.
$node->safe_psql('gamma', 'DROP SCHEMA two CASCADE');
$node->safe_psql('gamma', $setup);
{
	local $PostgreSQL::Test::Utils::timeout_default = 8;
	ok( $node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tasker dispatcher' AND datname = 'gamma'}),
		'gamma: a dispatcher again within 8 s of the second CREATE EXTENSION');
}
run_tasks('gamma', 5);

my @complaints = grep { /\b(WARNING|ERROR|FATAL|PANIC):/ } split /\n/, slurp_file($node->logfile);
is(join("\n", @complaints), '', 'no complaint in the log');

$node->stop;
done_testing();
