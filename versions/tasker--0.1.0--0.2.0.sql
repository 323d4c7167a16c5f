-- tasker 0.1.0 -> 0.2.0.  Every change made to src/sql since 0.1.0 is
-- repeated here; test/t/060_upgrade.pl fails when the result differs from a
-- fresh install of 0.2.0.
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.2.0'" to load this file. \quit
