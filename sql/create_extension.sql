-- The extension installs into schema tasker, with the C library loaded.
CREATE EXTENSION tasker;
SELECT extname, extversion, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'tasker';

-- Every tasker.* setting exists with its default.
SELECT name, boot_val, unit, context FROM pg_settings WHERE name LIKE 'tasker.%' ORDER BY name;

-- The prefix is reserved: a misspelt setting is an error, not a silent placeholder.
SET tasker.no_such_setting = 1;

-- The state machines come from C.
SELECT machine, count(*) FROM tasker.state_machine() GROUP BY machine ORDER BY machine;
SELECT tasker.transition_allowed('step', 'complete', 'in_progress') AS complete_to_in_progress,
       tasker.transition_allowed('step', 'pending', 'in_progress') AS pending_to_in_progress;
SELECT tasker.transition_allowed('job', 'pending', 'complete');

-- Nothing is granted to PUBLIC.
SELECT count(*) AS public_grants
  FROM information_schema.role_table_grants
 WHERE table_schema = 'tasker' AND grantee = 'PUBLIC';
SELECT count(*) AS public_function_grants
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'tasker' AND has_function_privilege('public', p.oid, 'EXECUTE');

-- The user-data tables are dumped by pg_dump.
SELECT count(*) AS dumped_tables
  FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'tasker';

-- Shared by the other test files (they all run after this one, in its
-- database).
-- expect_error runs a statement that must fail and shows its error as a
-- notice: SQLSTATE, message, detail and hint.  The statement runs in a
-- subtransaction, so whatever it wrote is rolled back.
CREATE PROCEDURE public.expect_error(statement text)
    LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
BEGIN
    BEGIN
        EXECUTE statement;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                                detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
        message := format('error %s: %s', state, message);
        IF detail <> '' AND hint <> '' THEN
            RAISE NOTICE '%', message USING DETAIL = detail, HINT = hint;
        ELSIF detail <> '' THEN
            RAISE NOTICE '%', message USING DETAIL = detail;
        ELSIF hint <> '' THEN
            RAISE NOTICE '%', message USING HINT = hint;
        ELSE
            RAISE NOTICE '%', message;
        END IF;
        RETURN;
    END;
    RAISE EXCEPTION 'expected an error from: %', statement;
END $$;
