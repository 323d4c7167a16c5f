--------------------------------------------------------------------------
-- 90_grants.sql: nothing is granted to PUBLIC; see README "Roles".
--------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA tasker FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA tasker FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tasker FROM PUBLIC;

-- This database gets its dispatcher as soon as the install commits.
SELECT tasker._wake_launcher();
