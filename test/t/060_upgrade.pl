# 060_upgrade.pl — ALTER EXTENSION tasker UPDATE from the first release to
# the current version, on a database holding work, while the background
# workers run.
#
# A database starts at 0.1.0 (versions/tasker--0.1.0.sql) with tasks of a
# template mixing SQL-handler and external steps.  While an executor is in
# the middle of a step and an external worker holds a claim, the update runs:
# it waits for the running step's transaction (the utility hook takes the
# extension lock that workers share), then commits.  Afterwards the held
# step has finished at its first attempt, the claim made under 0.1.0 is
# completed under the new version, every task completes, every SQL step's
# side effect exists once and the invariants hold.  Finally the catalog the
# update chain leaves is compared, fact by fact, with a fresh install.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $tasks = 30;
my $first_version = '0.1.0';

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
});
$node->start;

my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'tasker'});
isnt($current, $first_version, "the current version ($current) is not the first release");
like( $node->safe_psql('postgres', qq{
	SELECT path FROM pg_extension_update_paths('tasker')
	WHERE source = '$first_version' AND target = '$current'}),
	qr/^\Q$first_version--\E.*\Q$current\E$/,
	'an update path leads from the first release to the current version');

$node->safe_psql('postgres', qq{
CREATE EXTENSION tasker VERSION '$first_version';
CREATE SCHEMA up;
CREATE TABLE up.release (task_id bigint);
CREATE TABLE up.writes (task_id bigint, step text, attempt integer, UNIQUE (task_id, step));
-- Writes a row; step a of a task whose context says hold waits for a
-- release row first.
CREATE FUNCTION up.write(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
    IF (input -> 'context' ->> 'hold')::boolean AND input ->> 'step_name' = 'a' THEN
        WHILE NOT EXISTS (SELECT FROM up.release WHERE task_id = (input ->> 'task_id')::bigint) LOOP
            PERFORM pg_sleep(0.02);
        END LOOP;
    END IF;
    INSERT INTO up.writes VALUES ((input ->> 'task_id')::bigint, input ->> 'step_name',
                                  (input ->> 'attempt')::integer);
    RETURN jsonb_build_object('wrote', input ->> 'step_name');
END \$\$;
SELECT tasker.register_template('{
  "namespace": "up", "name": "mixed", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "up.write(jsonb)"},
    {"name": "b", "queue": "up_ext", "depends_on": ["a"]},
    {"name": "c", "handler": "up.write(jsonb)", "depends_on": ["a"]},
    {"name": "d", "handler": "up.write(jsonb)", "depends_on": ["b", "c"]}
  ]}');
});

# One task whose step a is held inside an executor; the others run freely
# until their external step b.
my $held = $node->safe_psql('postgres',
	q{SELECT tasker.create_task('up', 'mixed', context => '{"hold": true}')});
$node->safe_psql('postgres',
	"SELECT tasker.create_task('up', 'mixed') FROM generate_series(2, $tasks)");
ok( $node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM tasker.workers w JOIN tasker.workflow_steps s
	    ON s.workflow_step_id = w.step_id WHERE s.task_id = $held AND s.name = 'a'}),
	'an executor is in the middle of the held step');
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM tasker.workflow_steps WHERE name = 'a' AND current_state = 'complete'}),
	'external steps are ready');
my ($claimed_step, $claimed_attempt) = split /\|/, $node->safe_psql('postgres',
	q{SELECT step_id, attempt FROM tasker.claim_steps('up_ext', 'before-update', 1)});
ok($claimed_step, 'an external worker holds a claim made under the first release');

# The update, in a session of its own: it must wait for the held step.
my ($stdout, $stderr) = ('', '');
my $update = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
	  '-c', 'ALTER EXTENSION tasker UPDATE',
	  '-c', q{SELECT extversion FROM pg_extension WHERE extname = 'tasker'} ],
	'>', \$stdout, '2>', \$stderr);
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_locks
	WHERE locktype = 'object' AND classid = 'pg_extension'::regclass AND NOT granted
	  AND mode = 'AccessExclusiveLock'}),
	'the update waits for the executor in the middle of its step');
is( $node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'tasker'}),
	$first_version, 'the first release is still installed while the step runs');

$node->safe_psql('postgres', "INSERT INTO up.release VALUES ($held)");
$update->finish;
is($?, 0, 'ALTER EXTENSION tasker UPDATE succeeded') or diag($stderr);
chomp $stdout;
is($stdout, $current, "the database is at $current");

is( $node->safe_psql('postgres',
		"SELECT tasker.complete_step($claimed_step, $claimed_attempt, '{\"by\": \"before-update\"}')"),
	't', 'the claim made under the first release completes under the new version');

# Work the external queue until every task is complete.
my $worked = 0;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	my $open = $node->safe_psql('postgres',
		q{SELECT count(*) FROM tasker.tasks WHERE current_state <> 'complete'});
	last if $open == 0;
	$worked += $node->safe_psql('postgres', q{
		SELECT count(tasker.complete_step(step_id, attempt, '{"by": "after-update"}'))
		FROM tasker.claim_steps('up_ext', 'after-update', 10)});
	usleep(50_000);
}
is( $node->safe_psql('postgres',
		q{SELECT count(*) FILTER (WHERE current_state = 'complete') || '/' || count(*) FROM tasker.tasks}),
	"$tasks/$tasks", 'every task completes after the update');
is($worked, $tasks - 1, 'the other external steps were worked after the update');
is( $node->safe_psql('postgres', q{
	SELECT count(*) || ' rows, ' || count(DISTINCT (task_id, step)) || ' distinct, max attempt '
	       || max(attempt) FROM up.writes}),
	(3 * $tasks) . ' rows, ' . (3 * $tasks) . ' distinct, max attempt 1',
	'every SQL step wrote its row once, at its first attempt');
is( $node->safe_psql('postgres', qq{
	SELECT attempts || ' ' || current_state FROM tasker.workflow_steps
	WHERE task_id = $held AND name = 'a'}),
	'1 complete', 'the step held across the update finished at its first attempt');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tasker.check_invariants()'),
	'0', 'the invariants hold after the update');

# The catalog the update chain leaves equals a fresh install's.
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION tasker');
my $describe = slurp_file("$ENV{TESTDIR}/test/upgrade/describe_catalog.sql");
my $updated = $node->safe_psql('postgres', $describe);
my $fresh = $node->safe_psql('fresh', $describe);
cmp_ok(scalar(split /\n/, $fresh), '>', 1000, 'the catalog description is substantial');
if ($updated eq $fresh)
{
	pass('the updated extension is the same as a fresh install');
}
else
{
	# one fact may span lines (a function's definition): diff the texts
	my $dir = PostgreSQL::Test::Utils::tempdir;
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh", "$fresh\n");
	PostgreSQL::Test::Utils::append_to_file("$dir/updated", "$updated\n");
	diag(scalar(`diff -u $dir/fresh $dir/updated`));
	fail('the updated extension is the same as a fresh install');
}

# The fresh database is served too, and an update with nothing to do is refused
# cleanly by PostgreSQL (a notice, no error).
my ($rc, $out, $err) = $node->psql('postgres', 'ALTER EXTENSION tasker UPDATE');
is($rc, 0, 'updating the current version again is harmless');
like($err, qr/already installed/, 'and says the version is already installed');

$node->stop;
done_testing();
