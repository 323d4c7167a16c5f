-- tasker 0.3.0 -> 0.4.0.  Every change made to src/sql since 0.3.0 is
-- repeated here; test/t/060_upgrade.pl fails when the result differs from a
-- fresh install of 0.4.0.
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.4.0'" to load this file. \quit

-- _finalize_tasks was planned again on every call (its array argument made
-- every custom plan look cheaper than the generic one).
ALTER FUNCTION tasker._finalize_tasks(bigint[]) SET plan_cache_mode = force_generic_plan;

-- The dispatcher's timer scans: a generic plan made while the table was
-- empty walks the whole primary key; plan them for the table as it is.
ALTER FUNCTION tasker.reap_expired_leases() SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION tasker._recover_sql_steps(text[], timestamptz) SET plan_cache_mode = force_custom_plan;
