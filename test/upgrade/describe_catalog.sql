-- describe_catalog.sql — one line per fact about what extension tasker
-- owns: its member objects, every function's full definition and settings,
-- columns, constraints, indexes, triggers, views, policies, privileges,
-- comments and the tables pg_dump treats as configuration.  Two databases
-- whose outputs are equal hold the same extension; test/t/060_upgrade.pl
-- compares a chain of update scripts with a fresh install this way.
WITH ext AS (
    SELECT oid FROM pg_extension WHERE extname = 'tasker'
), member AS (
    SELECT d.classid, d.objid
    FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rel AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relkind
    FROM member m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
), fn AS (
    SELECT p.oid, p.oid::regprocedure::text AS name, p.prokind
    FROM member m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
), facts(fact) AS (
    SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM member
    UNION ALL
    SELECT 'function ' || name || E'\n' || CASE WHEN prokind = 'a' THEN 'aggregate'
                                                ELSE pg_get_functiondef(oid) END FROM fn
    UNION ALL
    SELECT 'function ' || fn.name || ' acl ' || coalesce(p.proacl::text, 'default')
           || ' config ' || coalesce(p.proconfig::text, 'none')
           || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), 'none')
    FROM fn JOIN pg_proc p USING (oid)
    UNION ALL
    SELECT format('relation %s kind %s acl %s options %s rls %s comment %s', r.name, r.relkind,
                  coalesce(c.relacl::text, 'default'), coalesce(c.reloptions::text, 'none'),
                  c.relrowsecurity, coalesce(obj_description(c.oid, 'pg_class'), 'none'))
    FROM rel r JOIN pg_class c USING (oid)
    UNION ALL
    -- columns by position among the live ones: a dropped column leaves a hole
    SELECT format('column %s #%s %s %s%s default %s acl %s comment %s', r.name,
                  row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum), a.attname,
                  format_type(a.atttypid, a.atttypmod),
                  CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                  coalesce(pg_get_expr(ad.adbin, ad.adrelid), 'none'),
                  coalesce(a.attacl::text, 'default'),
                  coalesce(col_description(r.oid, a.attnum), 'none'))
    FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE r.relkind IN ('r', 'v', 'm', 'p', 'c')
    UNION ALL
    SELECT format('constraint %s %s %s', r.name, con.conname, pg_get_constraintdef(con.oid))
    FROM rel r JOIN pg_constraint con ON con.conrelid = r.oid
    UNION ALL
    SELECT format('index %s %s', r.name, pg_get_indexdef(i.indexrelid))
    FROM rel r JOIN pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT format('trigger %s %s', r.name, pg_get_triggerdef(t.oid))
    FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT format('view %s %s', r.name, pg_get_viewdef(r.oid))
    FROM rel r WHERE r.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('policy %s %s %s %s %s using %s check %s', r.name, p.polname, p.polcmd,
                  p.polpermissive, p.polroles::regrole[], coalesce(pg_get_expr(p.polqual, p.polrelid), 'none'),
                  coalesce(pg_get_expr(p.polwithcheck, p.polrelid), 'none'))
    FROM rel r JOIN pg_policy p ON p.polrelid = r.oid
    UNION ALL
    SELECT format('sequence %s %s %s %s %s %s', r.name, format_type(s.seqtypid, NULL),
                  s.seqstart, s.seqincrement, s.seqmin, s.seqmax)
    FROM rel r JOIN pg_sequence s ON s.seqrelid = r.oid
    UNION ALL
    SELECT format('enum %s %s', e.enumtypid::regtype, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))
    FROM member m JOIN pg_enum e ON m.classid = 'pg_type'::regclass AND e.enumtypid = m.objid
    GROUP BY e.enumtypid
    UNION ALL
    SELECT format('type %s %s', t.oid::regtype, t.typtype)
    FROM member m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
    UNION ALL
    SELECT format('schema %s owner-acl %s comment %s', n.nspname, coalesce(n.nspacl::text, 'default'),
                  coalesce(obj_description(n.oid, 'pg_namespace'), 'none'))
    FROM pg_namespace n WHERE n.nspname = 'tasker'
    UNION ALL
    SELECT format('config %s %s', c.oid::regclass, coalesce(e.extcondition[i], ''))
    FROM pg_extension e, generate_subscripts(e.extconfig, 1) i, pg_class c
    WHERE e.extname = 'tasker' AND c.oid = e.extconfig[i]
)
SELECT fact FROM facts ORDER BY fact;
