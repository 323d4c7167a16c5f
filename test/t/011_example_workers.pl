# 011_example_workers.pl — the example external workers of test/workers/
# work real queues: the bash/psql worker one queue, the Node worker
# (node-postgres) another, each until it has been idle for a while.  Some
# tasks fail their first attempts, so the retry path runs too.  The Node
# part is skipped, with a message, when node is not installed; node-postgres
# is installed with npm into test/workers/node_modules when it is missing.
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $workers = abs_path(dirname(__FILE__) . '/../workers');
my $tasks = 12;

my $node = PostgreSQL::Test::Cluster->new('example_workers');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');

# One diamond template per worker, each on its own queue, and tasks of
# both; every third task fails the first attempt of each of its steps.
foreach my $kind ('psql', 'node')
{
	$node->safe_psql('postgres', qq{
	SELECT tasker.register_template('{
	  "namespace": "examples", "name": "$kind", "version": "1.0.0",
	  "steps": [
	    {"name": "fetch", "queue": "ex_$kind"},
	    {"name": "left", "queue": "ex_$kind", "depends_on": ["fetch"]},
	    {"name": "right", "queue": "ex_$kind", "depends_on": ["fetch"]},
	    {"name": "merge", "queue": "ex_$kind", "depends_on": ["left", "right"]}
	  ]}');
	SELECT count(tasker.create_task('examples', '$kind',
	         context => jsonb_build_object('n', g, 'fail_first', g % 3 = 0)))
	  FROM generate_series(1, $tasks) g;});
}

# The connection the workers use: the PG* variables of the node.
$ENV{PGHOST} = $node->host;
$ENV{PGPORT} = $node->port;
$ENV{PGDATABASE} = 'postgres';

# check_queue asserts that every task of a template is complete and that
# every step was completed by the named worker, with the retries expected.
sub check_queue
{
	my ($kind, $worker) = @_;
	is( $node->safe_psql('postgres', qq{
		SELECT t.current_state, count(*) FROM tasker.tasks t JOIN tasker.templates n USING (named_task_id)
		 WHERE n.namespace = 'examples' AND n.name = '$kind' GROUP BY 1}),
		"complete|$tasks", "$kind worker: every task is complete");
	is( $node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE s.results ->> 'message' = 'done by $worker'),
		       sum(s.attempts) FILTER (WHERE (t.context ->> 'fail_first')::boolean),
		       sum(s.attempts) FILTER (WHERE NOT (t.context ->> 'fail_first')::boolean)
		  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
		 WHERE s.queue = 'ex_$kind'}),
		join('|', 4 * $tasks, 2 * 4 * ($tasks / 3), 4 * ($tasks - $tasks / 3)),
		"$kind worker: completed every step, retrying the failed first attempts");
}

# The bash/psql worker, until 10 empty polls in a row (about 2 s).
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ "$workers/psql_worker.sh", 'ex_psql', 'psql-1', '10' ],
	'>', \$out, '2>', \$err, IPC::Run::timeout(180));
ok($ok, 'psql_worker.sh ran and exited') or diag("stdout: $out\nstderr: $err");
check_queue('psql', 'psql-1');

SKIP:
{
	my $node_bin = `command -v node 2>/dev/null`;
	chomp $node_bin;
	skip 'node is not installed: the Node example worker was not run (install nodejs and npm)', 3
	  unless $node_bin;

	# node-postgres: use the one installed next to the worker, or install it there
	if (system('node', '-e', "require.resolve('pg', {paths: ['$workers']})") != 0)
	{
		local $ENV{npm_config_cache} = PostgreSQL::Test::Utils::tempdir . '/npm-cache';
		my ($npm_out, $npm_err) = ('', '');
		IPC::Run::run([ 'npm', 'install', '--no-audit', '--no-fund', '--no-package-lock',
				'--prefix', $workers ],
			'>', \$npm_out, '2>', \$npm_err, IPC::Run::timeout(300))
		  or BAIL_OUT("npm install of node-postgres failed: $npm_err");
	}

	# The Node worker, until it has had no work for 3 s.
	($out, $err) = ('', '');
	$ok = IPC::Run::run([ 'node', "$workers/node_worker.js", 'ex_node', 'node-1', '3000' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(180));
	ok($ok, 'node_worker.js ran and exited') or diag("stdout: $out\nstderr: $err");
	check_queue('node', 'node-1');
}

$node->stop;
done_testing();
