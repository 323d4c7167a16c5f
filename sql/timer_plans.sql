-- The dispatcher keeps the plans of its timer scans (reap_expired_leases,
-- _recover_sql_steps) for its whole life.  Their ORDER BY must be one no
-- index supplies: otherwise a plan made while workflow_steps was small walks
-- the whole primary key to skip a sort, forever after.  Sorting is disabled
-- here, so a plan that could avoid the sort through the primary key would
-- show it; each scan's query is taken from the installed function.
CREATE TEMP TABLE timer_plan (scan text, line text);
DO $$
DECLARE
    fn text;
    query text;
    line text;
BEGIN
    SET LOCAL enable_seqscan = off;
    SET LOCAL enable_sort = off;
    SET LOCAL plan_cache_mode = force_generic_plan;
    FOREACH fn IN ARRAY ARRAY['reap_expired_leases', '_recover_sql_steps'] LOOP
        SELECT substring(p.prosrc FROM '(SELECT \* FROM tasker\.workflow_steps.*?FOR UPDATE SKIP LOCKED)')
          INTO query
          FROM pg_proc p
         WHERE p.proname = fn AND p.pronamespace = 'tasker'::regnamespace;
        query := regexp_replace(query, '--[^\n]*', '', 'g');
        query := replace(replace(query, 'live_executors', '$1::text[]'),
                         'listed_at', '$2::timestamptz');
        EXECUTE 'PREPARE timer_scan AS ' || query;
        FOR line IN EXECUTE CASE fn WHEN '_recover_sql_steps'
                                    THEN 'EXPLAIN (COSTS OFF) EXECUTE timer_scan(''{}'', now())'
                                    ELSE 'EXPLAIN (COSTS OFF) EXECUTE timer_scan' END LOOP
            INSERT INTO timer_plan VALUES (fn, line);
        END LOOP;
        DEALLOCATE timer_scan;
    END LOOP;
END $$;
-- each scan reads the lease index and sorts; none reads the primary key
SELECT scan,
       bool_or(line ~ 'Index Scan using workflow_steps_leased_idx') AS lease_index,
       bool_or(line ~ 'Sort Key') AS sorts,
       bool_or(line ~ 'workflow_steps_pkey') AS primary_key
  FROM timer_plan GROUP BY scan ORDER BY scan;
