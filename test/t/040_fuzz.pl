# 040_fuzz.pl — the fuzz test's generator (sql/fuzz.sql) from several
# sessions at once, with what the pg_regress form leaves out because its
# output must not depend on timing: templates whose steps run a real SQL
# handler (fzh.run, which sleeps a little and fails now and then, retryably,
# for good or asking for a retry), run by the background workers while the
# sessions claim, complete, fail, cancel, resolve and retry; leases short
# enough to expire under the dispatcher's reaper; a commit after every call.
# Bounded by counts: 6 pgbench clients make 800 calls each.  Then: no call
# failed in a way that means a bug (the same list as sql/fuzz.sql: internal
# errors, deadlocks, constraint violations that escaped the API...), no
# background worker died, no deadlock was logged, and
# tasker.check_invariants() finds nothing, while the workers still run and
# again once they have nothing left to run.  Every call that failed is in
# the test's log (by function, SQLSTATE and message).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 6;
my $calls = 800;

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_connections = 40
max_worker_processes = 32
tasker.poll_interval = 100ms
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
$node->safe_psql('postgres', q{
CREATE SCHEMA fzh;
CREATE FUNCTION fzh.run(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(random() * 0.01);
    IF random() < 0.2 THEN
        RAISE EXCEPTION 'fzh.run failed';
    ELSIF random() < 0.05 THEN
        PERFORM tasker.fail_permanently('fzh.run failed for good');
    ELSIF random() < 0.05 THEN
        PERFORM tasker.retry_after(0, 'fzh.run asks for a retry');
    END IF;
    RETURN jsonb_build_object('step', input -> 'step_id', 'attempt', input -> 'attempt');
END $$;
GRANT EXECUTE ON FUNCTION tasker.fail_permanently(text, text), tasker.retry_after(integer, text) TO PUBLIC;
});

# The generator: sql/fuzz.sql up to the point where the regress test starts
# its run.
my $source = slurp_file("$ENV{TESTDIR}/sql/fuzz.sql");
my ($generator) = $source =~ /\A(.*?)^-- What earlier runs found/ms;
ok(defined $generator && $generator =~ /CREATE PROCEDURE fuzz\.run/, 'the generator is found in sql/fuzz.sql');
$node->safe_psql('postgres', $generator);
$node->safe_psql('postgres', q{
UPDATE fuzz.options SET sql_handlers = true, short_leases = true, commit_every = 1;
ALTER DATABASE postgres SET tasker.backoff_base = 0;
});

$node->pgbench(
	"--no-vacuum --client=$clients --jobs=$clients --transactions=$calls",
	0,
	[qr{processed: @{[ $clients * $calls ]}/@{[ $clients * $calls ]}}],
	[qr{^$}],
	'concurrent fuzz',
	{ '040_fuzz_call' => 'CALL fuzz.run(1);' });

is($node->safe_psql('postgres', 'SELECT count(*) FROM fuzz.calls'),
	$clients * $calls, 'every call was made and recorded');
# the functions the seeded run does not draw from (added since)
$node->safe_psql('postgres', 'CALL fuzz.run_others(50)');
note "failed calls, by function and SQLSTATE:\n" . $node->safe_psql('postgres', q{
	SELECT name || ' ' || sqlstate || ' ' || count(*) || ' e.g. ' || min(left(message, 100))
	  FROM fuzz.calls WHERE sqlstate IS NOT NULL GROUP BY name, sqlstate ORDER BY name, sqlstate});
is($node->safe_psql('postgres', q{
	SELECT string_agg(name || ' ' || sqlstate || ': ' || message, E'\n' ORDER BY n)
	  FROM fuzz.calls
	 WHERE left(sqlstate, 2) IN ('XX', '2F', '39', '40', '53', '57', '58', '25')
	    OR sqlstate IN ('P0001', 'P0004', '42601', '42702', '42703', '42P01', '42P08', '42725',
	                    '21000', '23502', '23503', '23505')}),
	'', 'no call failed in a way that means a bug');
ok($node->safe_psql('postgres', q{
	SELECT count(*) FROM fuzz.calls WHERE name IN ('complete_step', 'claim_steps', 'create_task') AND sqlstate IS NULL}) > 0,
	'calls succeeded too');

is($node->safe_psql('postgres', q{
	SELECT string_agg(invariant || ': ' || detail, E'\n') FROM tasker.check_invariants()}),
	'', 'the invariants hold while the workers run');

# Let the background workers run what is left of the SQL-handler steps
# (bounded wait), then check again.
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM tasker.workflow_steps
	 WHERE handler IS NOT NULL AND pending_parents = 0 AND attempts < max_attempts
	   AND (current_state = 'in_progress'
	        OR (current_state IN ('pending', 'waiting_for_retry') AND coalesce(next_attempt_at, now()) <= now()))})
  or note 'SQL-handler steps still ready after the wait';
note "SQL-handler steps by state:\n" . $node->safe_psql('postgres', q{
	SELECT current_state || ' ' || count(*) FROM tasker.workflow_steps
	 WHERE handler IS NOT NULL GROUP BY current_state ORDER BY 1});
is($node->safe_psql('postgres', q{
	SELECT string_agg(invariant || ': ' || detail, E'\n') FROM tasker.check_invariants()}),
	'', 'the invariants hold afterwards');

my $log = slurp_file($node->logfile);
unlike($log, qr/deadlock detected/, 'no deadlocks');
unlike($log, qr/exited with exit code [^0]|terminated by signal/, 'no background worker died');

$node->stop;
done_testing();
