# 030_pg_cron_schedule.pl — tasks on a schedule with pg_cron (Debian's
# postgresql-15-cron); tasker has no scheduler of its own.  Skipped when
# pg_cron is not installed.
#
# A cron job runs tasker.create_task every minute; the test waits (bounded)
# for the job to have run, checks that pg_cron recorded success, that the
# task exists with the context the job gave it, and that the workers ran its
# SQL step.  A template with identity_strategy "strict" and a context keyed
# by the minute makes a job that fires twice in a minute create one task.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $libdir = `pg_config --pkglibdir`;
chomp $libdir;
plan skip_all => 'pg_cron is not installed (apt-get install postgresql-15-cron)'
  unless -e "$libdir/pg_cron.so";

my $node = PostgreSQL::Test::Cluster->new('pg_cron');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron,tasker'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
tasker.poll_interval = 100ms
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION tasker;
CREATE TABLE public.reports (task_id bigint, for_minute text);
CREATE FUNCTION public.make_report(input jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO public.reports VALUES ((input ->> 'task_id')::bigint, input #>> '{context,minute}')
    RETURNING jsonb_build_object('written', true)
$$;
SELECT tasker.register_template('{
  "namespace": "sched", "name": "minutely_report", "identity_strategy": "strict",
  "steps": [{"name": "report", "handler": "public.make_report(jsonb)"}]}');
-- the scheduled command: a task keyed by the minute it is for
SELECT cron.schedule('tasker-minutely-report', '* * * * *',
  $$SELECT tasker.create_task('sched', 'minutely_report',
           context => jsonb_build_object('minute', to_char(date_trunc('minute', now()), 'YYYY-MM-DD HH24:MI')),
           initiator => 'pg_cron')$$);
});

ok($node->poll_query_until('postgres',
        q{SELECT count(*) > 0 FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')},
        't', 150),
    'pg_cron ran the job within two and a half minutes');
is($node->safe_psql('postgres',
        q{SELECT string_agg(DISTINCT status, ',') FROM cron.job_run_details}),
    'succeeded', 'the job succeeded');

ok($node->poll_query_until('postgres',
        q{SELECT count(*) > 0 FROM tasker.tasks WHERE current_state = 'complete'}, 't', 30),
    'the scheduled task ran to completion');
is($node->safe_psql('postgres',
        q{SELECT count(*) FROM tasker.tasks t JOIN public.reports r USING (task_id)
           WHERE t.initiator = 'pg_cron' AND r.for_minute = t.context ->> 'minute'}),
    $node->safe_psql('postgres', q{SELECT count(*) FROM tasker.tasks}),
    'each task was created by the job, and its step saw the job\'s context');

# running the job's command again within the same minute adds no task
my $command = $node->safe_psql('postgres',
    q{SELECT command FROM cron.job WHERE jobname = 'tasker-minutely-report'});
my $first = $node->safe_psql('postgres', $command);
my $again = $node->safe_psql('postgres', $command);
is($again, $first, 'a second run in the same minute returns the same task (strict identity)');

$node->safe_psql('postgres', q{SELECT cron.unschedule('tasker-minutely-report')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job}), '0', 'job unscheduled');

$node->stop;
done_testing();
