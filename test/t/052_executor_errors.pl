# 052_executor_errors.pl — resource and read-only errors in an executor are
# retries, not crashes; so are failures of the executor's own bookkeeping;
# and nothing a handler leaves behind runs as the executor's superuser.
#
# One executor (tasker.max_executors = 1, one step per claim) runs a task
# whose independent steps each hit an error on their first attempts, then a
# last step that depends on all of them:
#   disk_full         — raises SQLSTATE 53100 (as a full disk does) on attempts 1 and 2;
#   temp_file_limit   — a sort that spills past temp_file_limit (53400) on attempt 1;
#   read_only         — SET LOCAL transaction_read_only, then a write (25006) on attempt 1;
#   read_only_return  — SET LOCAL transaction_read_only and returns: the completion
#                       must not run read-only (or, if it does, it is a retry);
#   session_read_only — SET (not LOCAL) default_transaction_read_only and returns:
#                       the setting must not outlive the handler, or every later
#                       transaction of the executor would be read-only;
#   session_settings  — SET (not LOCAL) search_path and statement_timeout, likewise;
#   deferred_fk       — violates a DEFERRABLE INITIALLY DEFERRED foreign key on
#                       attempt 1: checked when the statement ends (23503), not at
#                       commit, outside the step's error handling;
#   complete_fails    — the completion's transition insert fails once (53100,
#                       injected by a trigger): the completion rolls back with the
#                       handler's writes and the attempt is a retryable failure.
# Every step completes, its side effect exists once (by the attempt that
# completed), the failed attempts carry the error's SQLSTATE; the server never
# restarted (same postmaster start time, no process terminated by a signal),
# the single executor ran every step and is still alive, and the settings the
# handlers changed did not reach the next step.
#
# When recording a failure fails too (both the completion's and the
# failure's transition inserts fail once), the executor exits (exit code 1,
# not a signal: no crash restart); the dispatcher counts the attempt as
# lost with it, and a new executor completes the step.  A fault that does
# not go away (every transition of one step fails) does not take the server
# down either: the step waits, the database's other work goes on, and once
# the fault is lifted the step completes.
#
# Last, a handler of an unprivileged role cannot leave code behind that
# would run later as the executor's superuser: a deferred constraint
# trigger fires at once, as that role; a WITH HOLD cursor and a temporary
# table are refused (42501).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('executor_errors');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.poll_interval = 100ms
tasker.backoff_base = 0
tasker.max_executors = 1
tasker.executor_batch_size = 1
tasker.executor_idle_timeout = 600s
tasker.default_lease = 10s
});
$node->start;
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE SCHEMA fault;
CREATE TABLE fault.effects (step_id bigint, attempt integer, name text);
CREATE TABLE fault.parent (id bigint PRIMARY KEY);
CREATE TABLE fault.child (parent_id bigint REFERENCES fault.parent DEFERRABLE INITIALLY DEFERRED);
-- what each step saw of the executor's settings when it started
CREATE TABLE fault.settings (name text, attempt integer, read_only text, search_path text,
                             statement_timeout text, transaction_read_only text);
CREATE FUNCTION fault.work(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    name text := input ->> 'step_name';
    attempt integer := (input ->> 'attempt')::integer;
BEGIN
    INSERT INTO fault.settings VALUES (name, attempt, current_setting('default_transaction_read_only'),
        current_setting('search_path'), current_setting('statement_timeout'),
        current_setting('transaction_read_only'));
    IF name = 'disk_full' AND attempt <= 2 THEN
        INSERT INTO fault.effects VALUES ((input ->> 'step_id')::bigint, attempt, name);
        RAISE EXCEPTION 'could not extend file "base/5/16384": No space left on device'
            USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
    ELSIF name = 'temp_file_limit' AND attempt = 1 THEN
        SET LOCAL work_mem = '64kB';
        SET LOCAL temp_file_limit = '256kB';
        PERFORM count(*) FROM (SELECT g, md5(g::text) FROM generate_series(1, 100000) g
                                ORDER BY 2) sorted;
    ELSIF name = 'read_only' AND attempt = 1 THEN
        SET LOCAL transaction_read_only = on;
    ELSIF name = 'session_read_only' AND attempt = 1 THEN
        PERFORM set_config('default_transaction_read_only', 'on', false);
    ELSIF name = 'deferred_fk' THEN
        IF attempt > 1 THEN
            INSERT INTO fault.parent VALUES ((input ->> 'step_id')::bigint);
        END IF;
        INSERT INTO fault.child VALUES ((input ->> 'step_id')::bigint);
    ELSIF name = 'session_settings' AND attempt = 1 THEN
        PERFORM set_config('search_path', 'fault, public', false);
        PERFORM set_config('statement_timeout', '1ms', false);
    END IF;
    INSERT INTO fault.effects VALUES ((input ->> 'step_id')::bigint, attempt, name);
    IF name = 'read_only_return' AND attempt = 1 THEN
        SET LOCAL transaction_read_only = on;
    END IF;
    RETURN jsonb_build_object('attempt', attempt);
END $$;

-- Fault injection: a transition of step <name> to <state> fails while
-- nextval('fault.<name>__<state>') <= 1 (sequences do not roll back).
CREATE FUNCTION fault.inject() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq regclass := to_regclass(format('fault.%I', (SELECT s.name FROM tasker.workflow_steps s
                                                      WHERE s.task_id = NEW.task_id
                                                        AND s.workflow_step_id = NEW.workflow_step_id)
                                                   || '__' || NEW.to_state));
BEGIN
    IF seq IS NOT NULL AND nextval(seq) <= (SELECT last_value FROM fault.limits WHERE sequence = seq) THEN
        RAISE EXCEPTION 'could not extend file "base/5/16400": No space left on device'
            USING ERRCODE = 'disk_full';
    END IF;
    RETURN NEW;
END $$;
CREATE TABLE fault.limits (sequence regclass PRIMARY KEY, last_value bigint);
CREATE SEQUENCE fault.complete_fails__complete;
CREATE SEQUENCE fault.both_fail__complete;
CREATE SEQUENCE fault.both_fail__waiting_for_retry;
INSERT INTO fault.limits VALUES ('fault.complete_fails__complete', 1),
    ('fault.both_fail__complete', 1), ('fault.both_fail__waiting_for_retry', 1);
CREATE TRIGGER inject BEFORE INSERT ON tasker.workflow_step_transitions
    FOR EACH ROW EXECUTE FUNCTION fault.inject();

SELECT tasker.register_template('{
  "namespace": "fault", "name": "errors", "version": "1.0.0",
  "steps": [
    {"name": "disk_full", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "temp_file_limit", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "read_only", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "read_only_return", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "session_read_only", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "session_settings", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "deferred_fk", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "complete_fails", "handler": "fault.work(jsonb)", "max_attempts": 5},
    {"name": "last", "handler": "fault.work(jsonb)", "max_attempts": 5,
     "depends_on": ["disk_full", "temp_file_limit", "read_only", "read_only_return",
                    "session_read_only", "session_settings", "deferred_fk", "complete_fails"]}
  ]}');
SELECT tasker.register_template('{
  "namespace": "fault", "name": "both", "version": "1.0.0",
  "steps": [{"name": "both_fail", "handler": "fault.work(jsonb)", "max_attempts": 5}]}');
});

my $task = $node->safe_psql('postgres', q{SELECT tasker.create_task('fault', 'errors')});
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state IN ('complete', 'error') FROM tasker.tasks WHERE task_id = $task}),
	'the task finishes');
is($node->safe_psql('postgres', "SELECT current_state FROM tasker.tasks WHERE task_id = $task"),
	'complete', 'the task is complete');

is( $node->safe_psql('postgres', qq{
	SELECT s.name, s.current_state, s.attempts,
	       coalesce(string_agg(x.metadata #>> '{error,sqlstate}', ',' ORDER BY x.sort_key)
	                    FILTER (WHERE x.to_state = 'waiting_for_retry'), '-')
	  FROM tasker.workflow_steps s
	  JOIN tasker.workflow_step_transitions x USING (task_id, workflow_step_id)
	 WHERE s.task_id = $task AND s.name NOT IN ('read_only_return')
	 GROUP BY s.workflow_step_id, s.name, s.current_state, s.attempts
	 ORDER BY s.workflow_step_id}),
	join("\n",
		'disk_full|complete|3|53100,53100',
		'temp_file_limit|complete|2|53400',
		'read_only|complete|2|25006',
		'session_read_only|complete|1|-',
		'session_settings|complete|1|-',
		'deferred_fk|complete|2|23503',
		'complete_fails|complete|2|53100',
		'last|complete|1|-'),
	'each error was a retryable failure with its SQLSTATE, and the retry completed');
is( $node->safe_psql('postgres', qq{
	SELECT current_state, attempts <= 2 FROM tasker.workflow_steps
	 WHERE task_id = $task AND name = 'read_only_return'}),
	'complete|t', 'a handler that left its transaction read-only completed');

is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM tasker.workflow_steps s
	  LEFT JOIN (SELECT step_id, count(*) AS n, max(attempt) AS attempt FROM fault.effects GROUP BY 1) e
	         ON e.step_id = s.workflow_step_id
	 WHERE s.task_id = $task AND (e.n IS DISTINCT FROM 1 OR e.attempt <> s.attempts)}),
	'0', 'every step\'s side effect exists once, by the attempt that completed');

is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM fault.settings
	 WHERE read_only <> 'off' OR transaction_read_only <> 'off'
	    OR search_path <> '"$user", public' OR statement_timeout <> '0'}),
	'0', 'no step started with a setting an earlier handler changed');

is( $node->safe_psql('postgres', qq{
	SELECT count(DISTINCT metadata ->> 'worker') FROM tasker.workflow_step_transitions
	 WHERE task_id = $task AND to_state = 'in_progress'}),
	'1', 'one executor claimed every attempt');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM pg_stat_activity a
	  JOIN (SELECT DISTINCT metadata ->> 'worker' AS worker FROM tasker.workflow_step_transitions
	         WHERE task_id = $task AND to_state = 'in_progress') w
	    ON w.worker = 'tasker executor ' || a.pid
	 WHERE a.backend_type = 'tasker executor'}),
	'1', 'and it is still running');

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started,
	'the server did not restart');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|all server processes terminated/,
	'no process was terminated by a signal');
unlike($log, qr/"tasker executor" \(PID \d+\) exited with exit code/,
	'no executor exited');

# Recording the failure fails too: the executor exits, the step is recovered.
my $offset = -s $node->logfile;
my $both = $node->safe_psql('postgres', q{SELECT tasker.create_task('fault', 'both')});
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $both}),
	'a step whose completion and failure both failed to record completes');
is( $node->safe_psql('postgres', qq{
	SELECT string_agg(concat_ws(' ', x.to_state, x.metadata ->> 'attempt', x.metadata ->> 'cause'),
	                  ', ' ORDER BY x.sort_key)
	  FROM tasker.workflow_step_transitions x WHERE x.task_id = $both}),
	'in_progress 1, waiting_for_retry 1 executor_lost, in_progress 2, complete 2',
	'its executor was counted as lost, and the next attempt completed');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM fault.effects e JOIN tasker.workflow_steps s ON s.workflow_step_id = e.step_id
	 WHERE s.task_id = $both}),
	'1', 'its side effect exists once');
$log = slurp_file($node->logfile, $offset);
like($log, qr/"tasker executor" \(PID \d+\) exited with exit code 1/,
	'the executor exited with exit code 1');
unlike($log, qr/terminated by signal|all server processes terminated/, 'without a crash restart');

# A fault that stays: every transition of step "stuck" to complete or to
# waiting_for_retry fails, until the test lifts it.
$node->safe_psql('postgres', q{
CREATE SEQUENCE fault.stuck__complete;
CREATE SEQUENCE fault.stuck__waiting_for_retry;
INSERT INTO fault.limits VALUES ('fault.stuck__complete', 1000000),
    ('fault.stuck__waiting_for_retry', 1000000);
SELECT tasker.register_template('{
  "namespace": "fault", "name": "stuck", "version": "1.0.0",
  "steps": [{"name": "stuck", "handler": "fault.work(jsonb)", "max_attempts": 100}]}');
SELECT tasker.register_template('{
  "namespace": "fault", "name": "fine", "version": "1.0.0",
  "steps": [{"name": "fine", "handler": "fault.work(jsonb)"}]}');
});
my $stuck = $node->safe_psql('postgres', q{SELECT tasker.create_task('fault', 'stuck')});
ok( $node->poll_query_until('postgres', q{SELECT nextval('fault.stuck__waiting_for_retry') > 3}),
	'the stuck step\'s transitions keep failing');
# The executor that ran it exited; let idle ones exit too, so that only the
# dispatcher (whose recovery of the stuck step keeps failing) can start the
# executor that the next tasks need.
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET tasker.executor_idle_timeout = '200ms'; SELECT pg_reload_conf()});
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'tasker executor'}),
	'no executor is left');
my $fine = $node->safe_psql('postgres', q{
	SELECT string_agg(tasker.create_task('fault', 'fine')::text, ',') FROM generate_series(1, 5)});
ok( $node->poll_query_until('postgres', qq{
	SELECT bool_and(current_state = 'complete') FROM tasker.tasks WHERE task_id IN ($fine)}),
	'other tasks still run meanwhile (the dispatcher skips the step it cannot recover)');
is($node->safe_psql('postgres', "SELECT current_state FROM tasker.tasks WHERE task_id = $stuck"),
	'in_progress', 'the stuck task waits');
$node->safe_psql('postgres', q{DELETE FROM fault.limits});
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $stuck}),
	'once the fault is lifted, the stuck step completes');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM fault.effects e JOIN tasker.workflow_steps s ON s.workflow_step_id = e.step_id
	 WHERE s.task_id = $stuck}),
	'1', 'its side effect exists once');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started,
	'the server never restarted');
$log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|all server processes terminated/,
	'no process was terminated by a signal');

# Nothing a handler leaves behind runs as the executor's superuser.
$node->safe_psql('postgres', q{
CREATE ROLE alice LOGIN;
CREATE SCHEMA conf AUTHORIZATION alice;
SELECT tasker.grant_submitter('alice', 'conf');
SET ROLE alice;
CREATE TABLE conf.log (who text, super boolean, what text);
CREATE TABLE conf.t (x integer);
CREATE FUNCTION conf.later() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conf.log SELECT current_user, rolsuper, 'deferred trigger'
      FROM pg_roles WHERE rolname = current_user;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER later AFTER INSERT ON conf.t DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION conf.later();
CREATE FUNCTION conf.held() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conf.log SELECT current_user, rolsuper, 'held cursor'
      FROM pg_roles WHERE rolname = current_user;
    RETURN 1;
END $$;
CREATE FUNCTION conf.handler(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conf.t VALUES (1);
    BEGIN
        EXECUTE 'DECLARE kept CURSOR WITH HOLD FOR SELECT conf.held()';
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO conf.log VALUES (current_user, NULL, 'cursor refused ' || SQLSTATE);
    END;
    BEGIN
        CREATE TEMPORARY TABLE t (x integer);
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO conf.log VALUES (current_user, NULL, 'temporary table refused ' || SQLSTATE);
    END;
    RETURN '{}';
END $$;
SELECT tasker.register_template('{
  "namespace": "conf", "name": "confined", "version": "1.0.0",
  "steps": [{"name": "s", "handler": "conf.handler(jsonb)"}]}');
});
my $confined = $node->safe_psql('postgres', q{SET ROLE alice; SELECT tasker.create_task('conf', 'confined')});
ok( $node->poll_query_until('postgres', qq{
	SELECT current_state = 'complete' FROM tasker.tasks WHERE task_id = $confined}),
	'the confined handler\'s step completes');
is( $node->safe_psql('postgres', q{SELECT who, super, what FROM conf.log ORDER BY what}),
	"alice||cursor refused 42501\nalice|f|deferred trigger\nalice||temporary table refused 42501",
	'the deferred trigger fired as the handler\'s role; the held cursor and the temporary table were refused');

$node->stop;
done_testing();
