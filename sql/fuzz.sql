-- fuzz: random and mutated input thrown at every function of the SQL API.
--
-- A seeded generator makes a fixed number of calls (no clock: the same
-- calls on every run): templates built at random and then mutated (fields
-- deleted, replaced by junk, unknown fields, duplicate steps, cycles, self
-- dependencies), the same as YAML with its text mutated (stray indicators,
-- tabs, anchors and aliases, an alias bomb), contexts and context schemas,
-- step results and error documents, bypass lists and tags with unknown
-- names and NULLs, worker names and reasons with quotes, semicolons, "$$",
-- control characters, 1 MB strings; ids of the fuzz's own tasks and steps,
-- of nothing, negative, huge and NULL; attempts current, stale and absurd.
-- Each call either succeeds or raises a clean error with a specific
-- SQLSTATE; afterwards tasker.check_invariants() finds nothing.
--
-- What is printed is what does not depend on the generator's details:
-- the classes of SQLSTATE seen, the calls that failed in a way that means a
-- bug (internal errors, plain RAISEs without a SQLSTATE, constraint
-- violations that escaped the API, missing columns...: none), and the
-- invariants.  Everything lives in namespaces, queues and templates named
-- fz_*; ids are only ever drawn from the fuzz's own rows (or are ids that
-- cannot exist), so other tests' rows are never touched.  The grant and
-- revoke helpers are left out: they change who may do what for the tests
-- that follow.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- retries due at once and leases longer than the test: nothing depends on
-- the clock or on the dispatcher's reaping
SET tasker.backoff_base = 0;
SET tasker.default_lease = '1h';
CREATE SCHEMA fuzz;

-- How the generator runs: here, with nothing that depends on timing or on
-- other sessions.  test/t/040_fuzz.pl runs the same generator from several
-- sessions at once, a commit per call, with SQL handlers (run by the
-- background workers meanwhile) and leases short enough to expire.
CREATE TABLE fuzz.options (sql_handlers boolean NOT NULL, short_leases boolean NOT NULL,
                           commit_every integer NOT NULL);
INSERT INTO fuzz.options VALUES (false, false, 20);

-- The functions under test, with how often each is called.
CREATE TABLE fuzz.api AS
SELECT p.oid::regprocedure AS fn, p.oid AS fn_oid, p.proname::text AS name, p.pronargs::integer AS nargs,
       p.pronargdefaults::integer AS ndefaults,
       CASE p.proname WHEN 'register_template' THEN 12 WHEN 'register_template_yaml' THEN 8
                      WHEN 'create_task' THEN 16 WHEN 'claim_steps' THEN 14
                      WHEN 'complete_step' THEN 12 WHEN 'fail_step' THEN 8
                      WHEN 'complete_steps' THEN 4 WHEN 'context_violation' THEN 4
                      WHEN 'yaml_to_jsonb' THEN 3 WHEN 'yaml_template' THEN 2
                      WHEN 'cancel_task' THEN 3 WHEN 'resolve_step' THEN 3 WHEN 'extend_lease' THEN 3
                      WHEN 'retry_step' THEN 3 WHEN 'retry_task' THEN 2
                      ELSE 1 END AS weight,
       -- the functions the seeded run draws from; any other (a function
       -- added since) is called after it, so that the run itself, and what
       -- it prints, does not change when the API grows
       p.proname = ANY (ARRAY['analytics_metrics', 'backoff_seconds', 'cancel_task', 'check_invariants',
           'claim_steps', 'complete_step', 'complete_steps', 'concurrency', 'concurrency_formula',
           'context_violation', 'create_task', 'dependency_levels', 'explain_task', 'extend_lease',
           'fail_permanently', 'fail_step', 'find_template', 'invariants_hold', 'metrics',
           'reap_expired_leases', 'recount_states', 'register_template', 'register_template_yaml',
           'resolve_step', 'retry_after', 'retry_step', 'retry_task', 'slowest_steps', 'slowest_tasks',
           'state_machine', 'step_handler', 'step_readiness_status', 'step_readiness_status_batch',
           'step_transitions', 'system_health_counts', 'task_execution_context', 'task_execution_contexts',
           'task_graph', 'task_history', 'task_steps', 'template_dependency_levels', 'template_graph',
           'transition_allowed', 'yaml_template', 'yaml_to_jsonb']) AS known
  FROM pg_proc p
 WHERE p.pronamespace = 'tasker'::regnamespace AND p.prokind = 'f'
   AND p.proname !~ '^_' AND p.proname !~ '^(grant|revoke)_';
CREATE TABLE fuzz.calls (n integer, name text, sqlstate text, message text);

-- Random draws (random() is seeded below).
CREATE FUNCTION fuzz.r(n integer) RETURNS integer LANGUAGE sql AS
    $$ SELECT floor(random() * n)::integer $$;
CREATE FUNCTION fuzz.chance(p double precision) RETURNS boolean LANGUAGE sql AS
    $$ SELECT random() < p $$;
CREATE FUNCTION fuzz.pick(a anyarray) RETURNS anyelement LANGUAGE sql AS
    $$ SELECT a[1 + floor(random() * cardinality(a))::integer] $$;

-- junk_text: the strings a hostile or careless client sends.
CREATE FUNCTION fuzz.junk_text() RETURNS text LANGUAGE plpgsql AS $body$
BEGIN
    RETURN CASE fuzz.r(16)
        WHEN 0 THEN ''
        WHEN 1 THEN 'x'
        WHEN 2 THEN $j$'; DROP TABLE tasker.tasks; --$j$
        WHEN 3 THEN $j$$$ $x$ \ " '' %s %% _ * ) ( $1$j$
        WHEN 4 THEN E'tab\there\nnew line \x01\x02\x1f\x7f'
        WHEN 5 THEN 'naïve 日本語 🚀 ﷽'
        WHEN 6 THEN repeat('long', 50)
        WHEN 7 THEN CASE WHEN fuzz.chance(0.15) THEN repeat('M', 1024 * 1024) ELSE repeat('k', 1000) END
        WHEN 8 THEN 'null'
        WHEN 9 THEN '1.0.0'
        WHEN 10 THEN 's' || fuzz.r(8)
        WHEN 11 THEN 'fz_q' || fuzz.r(3)
        WHEN 12 THEN (SELECT string_agg(chr(1 + fuzz.r(55295)), '') FROM generate_series(0, fuzz.r(20)))
        WHEN 13 THEN 'pending'
        WHEN 14 THEN '-1'
        ELSE 'fz_ns' || fuzz.r(3)
    END;
END $body$;

-- json: a random JSON value, nested up to depth.
CREATE FUNCTION fuzz.json(depth integer DEFAULT 2) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    result jsonb;
BEGIN
    CASE fuzz.r(CASE WHEN depth > 0 THEN 12 ELSE 9 END)
    WHEN 0 THEN RETURN 'null';
    WHEN 1 THEN RETURN to_jsonb(fuzz.chance(0.5));
    WHEN 2 THEN RETURN to_jsonb(fuzz.pick(ARRAY[0, -1, 1, 3, 2147483647, -2147483648, 9223372036854775807]));
    WHEN 3 THEN RETURN fuzz.pick(ARRAY['1e308', '-1.5', '123456789012345678901234567890', '1e-300', '1.0']::jsonb[]);
    WHEN 4, 5 THEN RETURN to_jsonb(fuzz.junk_text());
    WHEN 6 THEN RETURN '{}';
    WHEN 7 THEN RETURN '[]';
    WHEN 8 THEN
        RETURN CASE WHEN fuzz.chance(0.1)   -- deeply nested
                    THEN (repeat('{"a": [', 500) || '1' || repeat(']}', 500))::jsonb ELSE '{"ok": true}' END;
    WHEN 9 THEN
        SELECT jsonb_agg(fuzz.json(depth - 1)) INTO result FROM generate_series(0, fuzz.r(4));
        RETURN result;
    ELSE
        SELECT jsonb_object_agg(CASE WHEN fuzz.chance(0.3) THEN fuzz.junk_text()
                                     ELSE fuzz.pick(ARRAY['a', 'b', 'name', 'steps', 'type', 'id', 'x y']) END,
                                fuzz.json(depth - 1))
          INTO result FROM generate_series(0, fuzz.r(4));
        RETURN result;
    END CASE;
END $$;

-- schema: a context schema, usually well formed.
CREATE FUNCTION fuzz.schema() RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN CASE fuzz.r(6)
        WHEN 0 THEN '{"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}'
        WHEN 1 THEN '{"type": ["object", "null"], "additionalProperties": false, "properties": {"a": {"enum": [1, "x", null]}, "b": {"type": "array", "items": {"type": "string"}}}}'
        WHEN 2 THEN '{"type": "object", "properties": {"a": {"type": "object", "required": ["b"], "properties": {"b": {"type": "boolean"}}}}}'
        WHEN 3 THEN jsonb_build_object('type', fuzz.json(1), 'required', fuzz.json(1))
        WHEN 4 THEN CASE WHEN fuzz.chance(0.2)   -- deeply nested
                         THEN (repeat('{"type": "array", "items": ', 300) || '{"type": "integer"}' || repeat('}', 300))::jsonb
                         ELSE jsonb_build_object('properties', jsonb_build_object('a', fuzz.json(2)), 'items', fuzz.json(1)) END
        ELSE fuzz.json(3)
    END;
END $$;

-- random_path: a path to some value inside doc (possibly doc itself).
CREATE FUNCTION fuzz.random_path(doc jsonb) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    path text[] := '{}';
    cur jsonb := doc;
    k text;
BEGIN
    FOR depth IN 1..4 LOOP
        EXIT WHEN fuzz.chance(0.25);
        IF jsonb_typeof(cur) = 'object' AND cur <> '{}' THEN
            SELECT key INTO k FROM jsonb_object_keys(cur) key ORDER BY key COLLATE "C" OFFSET fuzz.r((SELECT count(*)::integer FROM jsonb_object_keys(cur))) LIMIT 1;
        ELSIF jsonb_typeof(cur) = 'array' AND jsonb_array_length(cur) > 0 THEN
            k := fuzz.r(jsonb_array_length(cur))::text;
        ELSE
            EXIT;
        END IF;
        path := path || k;
        cur := cur #> ARRAY[k];
    END LOOP;
    RETURN path;
END $$;

-- mutate: one random change to a document.
CREATE FUNCTION fuzz.mutate(doc jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    path text[] := fuzz.random_path(doc);
    n integer := coalesce(jsonb_array_length(CASE WHEN jsonb_typeof(doc -> 'steps') = 'array' THEN doc -> 'steps' END), 0);
    k integer;
    field text;
BEGIN
    IF jsonb_typeof(doc) <> 'object' THEN
        RETURN fuzz.json(2);
    END IF;
    CASE fuzz.r(8)
    WHEN 0 THEN RETURN doc #- path;
    WHEN 1 THEN RETURN CASE WHEN path = '{}' THEN fuzz.json(2) ELSE jsonb_set(doc, path, fuzz.json(2)) END;
    WHEN 2 THEN RETURN doc || jsonb_build_object(fuzz.pick(ARRAY['depend_on', 'extra', 'steps ', 'Name']), fuzz.json(1));
    WHEN 3 THEN   -- a duplicate step
        RETURN CASE WHEN n > 0 THEN jsonb_set(doc, '{steps}', (doc -> 'steps') || (doc -> 'steps' -> fuzz.r(n))) ELSE doc END;
    -- (4 to 6 set a field of a step: only when that step is an object, as
    -- jsonb_set cannot name a field inside an array or a scalar)
    WHEN 4 THEN   -- a cycle: the first step depends on the last
        RETURN CASE WHEN n > 1 AND jsonb_typeof(doc -> 'steps' -> 0) = 'object'
                    THEN jsonb_set(doc, '{steps,0,depends_on}', jsonb_build_array(doc #> ARRAY['steps', (n - 1)::text, 'name'])) ELSE doc END;
    WHEN 5 THEN   -- a step depends on itself, or on nothing known
        RETURN CASE WHEN n > 0 AND jsonb_typeof(doc -> 'steps' -> (n - 1)) = 'object'
                    THEN jsonb_set(doc, ARRAY['steps', (n - 1)::text, 'depends_on'],
                                   jsonb_build_array(fuzz.pick(ARRAY[doc #>> ARRAY['steps', (n - 1)::text, 'name'], 'ghost', '']))) ELSE doc END;
    WHEN 6 THEN   -- a step field of the wrong type
        IF n = 0 THEN
            RETURN doc;
        END IF;
        k := fuzz.r(n);
        field := fuzz.pick(ARRAY['name', 'max_attempts', 'retryable', 'timeout', 'skippable', 'queue', 'depends_on', 'handler']);
        RETURN CASE WHEN jsonb_typeof(doc -> 'steps' -> k) = 'object'
                    THEN jsonb_set(doc, ARRAY['steps', k::text, field], fuzz.json(1)) ELSE doc END;
    ELSE RETURN doc - fuzz.pick(ARRAY['name', 'namespace', 'version', 'steps']);
    END CASE;
END $$;

-- template: a template built at random, then mutated now and then.
CREATE FUNCTION fuzz.template() RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    n integer := fuzz.r(7);
    steps jsonb := '[]';
    step jsonb;
    deps jsonb;
    doc jsonb;
BEGIN
    FOR i IN 1..n LOOP
        step := jsonb_build_object('name', 's' || i);
        IF i > 1 AND fuzz.chance(0.6) THEN
            SELECT jsonb_agg('s' || j) INTO deps FROM generate_series(1, i - 1) j WHERE fuzz.chance(0.5);
            IF deps IS NOT NULL THEN
                step := step || jsonb_build_object(fuzz.pick(ARRAY['depends_on', 'depends_on_steps', 'depends_on_step']),
                    CASE WHEN jsonb_array_length(deps) = 1 AND fuzz.chance(0.5) THEN deps -> 0 ELSE deps END);
            END IF;
        END IF;
        IF fuzz.chance(0.5) THEN step := step || jsonb_build_object('queue', 'fz_q' || fuzz.r(3)); END IF;
        IF fuzz.chance(0.3) THEN step := step || jsonb_build_object('retryable', fuzz.chance(0.5)); END IF;
        IF fuzz.chance(0.3) THEN step := step || jsonb_build_object('max_attempts', 1 + fuzz.r(3)); END IF;
        IF fuzz.chance(0.3) THEN step := step || jsonb_build_object('skippable', true); END IF;
        IF fuzz.chance(0.1) THEN
            step := step || jsonb_build_object('timeout', fuzz.pick(ARRAY['10', '"1 minute"', '-5', '"soon"', '0', '1e300']::jsonb[]));
        END IF;
        -- handlers that do not exist or do not fit (so that here no step
        -- runs in the background), or fzh.run, which 040_fuzz.pl defines
        IF fuzz.chance(CASE WHEN (SELECT sql_handlers FROM fuzz.options) THEN 0.3 ELSE 0.05 END) THEN
            step := step || jsonb_build_object('handler', fuzz.pick(CASE WHEN (SELECT sql_handlers FROM fuzz.options)
                THEN ARRAY['fzh.run(jsonb)', 'fzh.run(jsonb)', 'fzh.run(jsonb)', 'fzh.run(jsonb)', 'fuzz.no_such_function(jsonb)']
                ELSE ARRAY['fuzz.no_such_function(jsonb)', 'pg_catalog.now()', 'pg_catalog.jsonb_pretty(jsonb)',
                           $h$x'); DROP TABLE t; --$h$, '', 'fuzz.r'] END));
        END IF;
        IF fuzz.chance(0.1) THEN step := step || jsonb_build_object('dependent_system', fuzz.pick(ARRAY['fz_sys', 'bad name', ''])); END IF;
        IF fuzz.chance(0.1) THEN step := step || jsonb_build_object('description', fuzz.json(1)); END IF;
        steps := steps || jsonb_build_array(step);
    END LOOP;
    doc := jsonb_build_object('namespace', 'fz_ns' || fuzz.r(3), 'name', 'fz_t' || fuzz.r(4),
                              'version', format('1.%s.%s', fuzz.r(30), fuzz.r(30)), 'steps', steps);
    IF fuzz.chance(0.3) THEN
        doc := doc || jsonb_build_object('identity_strategy', fuzz.pick(ARRAY['always_unique', 'strict', 'caller_provided', 'bogus']));
    END IF;
    IF fuzz.chance(0.3) THEN doc := doc || jsonb_build_object('context_schema', fuzz.schema()); END IF;
    FOR i IN 1..CASE WHEN fuzz.chance(0.5) THEN 0 ELSE 1 + fuzz.r(3) END LOOP
        doc := fuzz.mutate(doc);
    END LOOP;
    RETURN doc;
END $$;

-- yaml: a template in the Rails engine's YAML, its text mutated now and then.
CREATE FUNCTION fuzz.scalar(v jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string' AND fuzz.chance(0.7) AND (v #>> '{}') ~ '^[A-Za-z0-9_.:-]+$'
                THEN v #>> '{}' ELSE v::text END
$$;
CREATE FUNCTION fuzz.yaml() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t jsonb := fuzz.template();
    lines text[] := '{}';
    step jsonb;
    y text;
    pos integer;
BEGIN
    IF fuzz.chance(0.05) THEN   -- an alias bomb: 10^7 values from a few lines
        RETURN E'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n'
            || E'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n'
            || E'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n'
            || E'g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n';
    END IF;
    IF fuzz.chance(0.05) THEN
        RETURN CASE WHEN fuzz.chance(0.3) THEN repeat('- ', 300) || 'x' || E'\n' ELSE fuzz.junk_text() END;
    END IF;
    IF jsonb_typeof(t) = 'object' THEN
        lines := lines || ('name: ' || fuzz.scalar(coalesce(t -> 'name', '"fz_t0"')))
                       || ('namespace_name: ' || fuzz.scalar(coalesce(t -> 'namespace', '"fz_ns0"')))
                       || ('version: ' || fuzz.scalar(coalesce(t -> 'version', '"1.0.0"')));
        IF fuzz.chance(0.3) THEN lines := lines || 'task_handler_class: Fz::Task'::text; END IF;
        lines := lines || 'step_templates:'::text;
        FOR step IN SELECT value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t -> 'steps') = 'array' THEN t -> 'steps' ELSE '[]' END) LOOP
            IF jsonb_typeof(step) <> 'object' THEN
                lines := lines || ('  - ' || step::text);
                CONTINUE;
            END IF;
            lines := lines || ('  - name: ' || fuzz.scalar(coalesce(step -> 'name', 'null')));
            IF step ? 'depends_on' THEN lines := lines || ('    depends_on_steps: ' || (step -> 'depends_on')::text); END IF;
            IF step ? 'depends_on_steps' THEN lines := lines || ('    depends_on_steps: ' || (step -> 'depends_on_steps')::text); END IF;
            IF step ? 'depends_on_step' THEN lines := lines || ('    depends_on_step: ' || fuzz.scalar(step -> 'depends_on_step')); END IF;
            IF step ? 'max_attempts' THEN lines := lines || ('    default_retry_limit: ' || fuzz.scalar(step -> 'max_attempts')); END IF;
            IF step ? 'retryable' THEN lines := lines || ('    default_retryable: ' || fuzz.scalar(step -> 'retryable')); END IF;
            IF step ? 'skippable' THEN lines := lines || ('    skippable: ' || fuzz.scalar(step -> 'skippable')); END IF;
            IF fuzz.chance(0.4) THEN
                lines := lines || ('    handler_class: ' || fuzz.pick(ARRAY['Fz::Charge', 'Fz::Ship', 'fz_handler', 'Fz::Charge::V2', '"Fz Bad"']));
            END IF;
            IF fuzz.chance(0.2) THEN lines := lines || ('    handler_config: ' || fuzz.json(1)::text); END IF;
        END LOOP;
    ELSE
        lines := lines || t::text;
    END IF;
    y := array_to_string(lines, E'\n') || E'\n';
    FOR i IN 1..CASE WHEN fuzz.chance(0.5) THEN 0 ELSE 1 + fuzz.r(3) END LOOP
        pos := fuzz.r(length(y) + 1);
        y := CASE fuzz.r(4)
            WHEN 0 THEN left(y, pos)                                     -- cut short
            WHEN 1 THEN left(y, pos) || substr(y, pos + 1 + fuzz.r(10))  -- a piece missing
            ELSE left(y, pos) || fuzz.pick(ARRAY[':', '- ', '&a ', '*a', '*nowhere', E'<<: *a\n', '!!binary ',
                 '!!str ', E'\t', '{', '}', '[', ']', '"', '''', E'---\n', E'...\n', E'%YAML 1.1\n', '? ',
                 E'|\n  x', E'>-\n', '#', E'\n  ', 'step_templates:', E'\n    depends_on_step: s1\n',
                 E'\n  - name: s1\n', '~', 'yes', '0x1F', '1e400', E'\u00e9', E'\x01'])
                 || substr(y, pos + 1)
        END;
    END LOOP;
    RETURN y;
END $$;

-- Ids drawn from the fuzz's own rows, or ids that cannot exist.
CREATE FUNCTION fuzz.task_id() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
    n integer;
BEGIN
    IF fuzz.chance(0.85) THEN
        SELECT count(*) INTO n FROM tasker.tasks t JOIN tasker.named_tasks nt USING (named_task_id)
          JOIN tasker.namespaces ns USING (namespace_id) WHERE ns.name LIKE 'fz\_%';
        SELECT t.task_id INTO id FROM tasker.tasks t JOIN tasker.named_tasks nt USING (named_task_id)
          JOIN tasker.namespaces ns USING (namespace_id) WHERE ns.name LIKE 'fz\_%'
         ORDER BY t.task_id OFFSET fuzz.r(n) LIMIT 1;
        IF id IS NOT NULL THEN
            RETURN id;
        END IF;
    END IF;
    RETURN fuzz.pick(ARRAY[NULL, 0, -1, 9223372036854775807]::bigint[]);
END $$;

CREATE FUNCTION fuzz.step_id() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
    n integer;
    -- mostly steps that are running, now and then ones that failed for good
    wanted text := fuzz.pick(ARRAY['in_progress', 'in_progress', 'error', NULL]);
BEGIN
    IF fuzz.chance(0.85) THEN
        SELECT count(*) INTO n FROM tasker.workflow_steps s
          JOIN tasker.tasks t USING (task_id) JOIN tasker.named_tasks nt USING (named_task_id)
          JOIN tasker.namespaces ns USING (namespace_id)
         WHERE ns.name LIKE 'fz\_%' AND (wanted IS NULL OR s.current_state = wanted);
        SELECT s.workflow_step_id INTO id FROM tasker.workflow_steps s
          JOIN tasker.tasks t USING (task_id) JOIN tasker.named_tasks nt USING (named_task_id)
          JOIN tasker.namespaces ns USING (namespace_id)
         WHERE ns.name LIKE 'fz\_%' AND (wanted IS NULL OR s.current_state = wanted)
         ORDER BY s.workflow_step_id OFFSET fuzz.r(n) LIMIT 1;
        IF id IS NOT NULL THEN
            RETURN id;
        END IF;
    END IF;
    RETURN fuzz.pick(ARRAY[NULL, 0, -1, 9223372036854775807]::bigint[]);
END $$;

-- attempt: mostly the step's current attempt, else a stale or absurd one.
CREATE FUNCTION fuzz.attempt(step bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    current integer := (SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_id = step);
BEGIN
    RETURN CASE WHEN current IS NOT NULL AND fuzz.chance(0.75) THEN current
                ELSE fuzz.pick(ARRAY[NULL, 0, -1, 1, 2, 2147483647, current - 1, current + 1]) END;
END $$;

CREATE FUNCTION fuzz.names() RETURNS text[] LANGUAGE sql AS $$
    SELECT CASE WHEN fuzz.chance(0.15) THEN NULL
                ELSE ARRAY(SELECT CASE WHEN fuzz.chance(0.1) THEN NULL WHEN fuzz.chance(0.7) THEN 's' || (1 + fuzz.r(7))
                                       ELSE fuzz.junk_text() END
                             FROM generate_series(1, fuzz.r(4))) END
$$;

-- literal: an SQL literal of the given type.
CREATE FUNCTION fuzz.literal(value anyelement) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN value IS NULL THEN format('NULL::%s', pg_typeof(value))
                ELSE format('%L::%s', value, pg_typeof(value)) END
$$;

-- args: the argument list of one call of fn, by what each argument means.
CREATE FUNCTION fuzz.args(api fuzz.api) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    names text[];
    types oid[];
    n integer := api.nargs - fuzz.r(api.ndefaults + 1);   -- trailing defaults left out now and then
    parts text[] := '{}';
    arg text;
    t regtype;
    step bigint;
    steps bigint[];
BEGIN
    SELECT coalesce(p.proargnames, '{}'),
           ARRAY(SELECT u.t FROM unnest(p.proargtypes) WITH ORDINALITY AS u(t, o) ORDER BY u.o)
      INTO names, types FROM pg_proc p WHERE p.oid = api.fn_oid;
    FOR i IN 1..n LOOP
        arg := names[i];
        t := types[i];
        parts := parts || CASE
            WHEN arg = 'template' THEN fuzz.literal(CASE WHEN fuzz.chance(0.9) THEN fuzz.template() ELSE fuzz.json(3) END)
            WHEN arg = 'yaml' THEN fuzz.literal(fuzz.yaml())
            WHEN arg IN ('namespace', 'namespace_filter') THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.85) THEN 'fz_ns' || fuzz.r(3) ELSE fuzz.junk_text() END)
            WHEN arg IN ('name', 'task_name_filter') THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.85) THEN 'fz_t' || fuzz.r(4) ELSE fuzz.junk_text() END)
            WHEN arg IN ('version', 'version_filter') THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.6) THEN NULL WHEN fuzz.chance(0.6) THEN format('1.%s.%s', fuzz.r(30), fuzz.r(30))
                                  ELSE fuzz.junk_text() END)
            WHEN arg = 'context' THEN
                fuzz.literal(CASE fuzz.r(5) WHEN 0 THEN fuzz.json(3) WHEN 1 THEN '{"a": 1}'::jsonb
                                  WHEN 2 THEN jsonb_build_object('a', fuzz.json(1), 'b', fuzz.json(1)) ELSE '{}' END)
            WHEN arg IN ('schema', 'value') THEN fuzz.literal(CASE WHEN arg = 'schema' THEN fuzz.schema() ELSE fuzz.json(3) END)
            WHEN arg IN ('results', 'error') AND t = 'jsonb'::regtype THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.5) THEN '{"ok": true}'::jsonb ELSE fuzz.json(2) END)
            WHEN arg IN ('tags', 'bypass_steps') THEN fuzz.literal(fuzz.names())
            WHEN arg = 'queue' THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.8) THEN fuzz.pick(ARRAY['fz_q0', 'fz_q1', 'fz_q2', 'fz_ns0', 'fz_ns1', 'fz_ns2'])
                                  ELSE fuzz.junk_text() END)
            WHEN arg IN ('max_steps', 'limit_count') THEN fuzz.literal(fuzz.pick(ARRAY[1, 1, 3, 10, 0, -1, 10001, NULL]))
            WHEN arg = 'lease' THEN fuzz.literal(fuzz.pick(CASE WHEN (SELECT short_leases FROM fuzz.options)
                THEN ARRAY[NULL, '1 ms', '20 ms', '0', '-1 second', '1 hour']::interval[]
                ELSE ARRAY[NULL, '1 hour', '2 days', '0', '-1 second', '1000 years']::interval[] END))
            WHEN arg = 'backoff_seconds' THEN fuzz.literal(fuzz.pick(ARRAY[NULL, 0, 0, -1, 86400, 2147483647]))
            WHEN arg = 'format' THEN fuzz.literal(fuzz.pick(ARRAY['mermaid', 'dot', 'svg', NULL, '']))
            WHEN arg IN ('machine', 'from_state', 'to_state') THEN
                fuzz.literal(fuzz.pick(ARRAY['task', 'step', 'pending', 'in_progress', 'waiting_for_retry', 'complete',
                                             'error', 'cancelled', 'resolved_manually', NULL, 'job']))
            WHEN arg IN ('task_id', 'input_task_id') THEN fuzz.literal(fuzz.task_id())
            WHEN arg IN ('task_ids', 'input_task_ids') THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.1) THEN NULL
                                  ELSE ARRAY(SELECT fuzz.task_id() FROM generate_series(1, fuzz.r(4))) END)
            WHEN arg = 'step_id' THEN fuzz.literal(fuzz.step_id())
            WHEN arg = 'step_ids' THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.1) THEN NULL
                                  ELSE ARRAY(SELECT fuzz.step_id() FROM generate_series(1, fuzz.r(4))) END)
            WHEN arg = 'attempt' THEN fuzz.literal(fuzz.attempt(step))
            WHEN arg = 'attempts' AND t = 'integer[]'::regtype THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.1) THEN NULL
                                  ELSE ARRAY(SELECT fuzz.attempt(s) FROM unnest(steps) s) || CASE WHEN fuzz.chance(0.1) THEN ARRAY[1] ELSE '{}' END END)
            WHEN arg = 'results' AND t = 'jsonb[]'::regtype THEN
                fuzz.literal(CASE WHEN fuzz.chance(0.2) THEN NULL
                                  ELSE ARRAY(SELECT fuzz.json(1) FROM unnest(steps) s) END)
            WHEN arg = 'since' THEN
                fuzz.literal(fuzz.pick(ARRAY[NULL, now() - interval '1 hour', 'infinity', '-infinity', '2000-01-01']::timestamptz[]))
            -- anything else, by type
            WHEN t = 'text'::regtype THEN fuzz.literal(CASE WHEN fuzz.chance(0.2) THEN NULL ELSE fuzz.junk_text() END)
            WHEN t = 'jsonb'::regtype THEN fuzz.literal(fuzz.json(2))
            WHEN t = 'boolean'::regtype THEN fuzz.literal(fuzz.pick(ARRAY[true, false, NULL]))
            WHEN t = 'integer'::regtype THEN fuzz.literal(fuzz.pick(ARRAY[0, 1, 3, -1, 100, 2147483647, -2147483648, NULL]))
            WHEN t = 'bigint'::regtype THEN fuzz.literal(fuzz.pick(ARRAY[0, 1, -1, 9223372036854775807, NULL]::bigint[]))
            WHEN t = 'double precision'::regtype THEN
                fuzz.literal(fuzz.pick(ARRAY[0, 0.5, 1, -1, 1e308, 'NaN', 'Infinity', '-Infinity', NULL]::double precision[]))
            WHEN t = 'interval'::regtype THEN fuzz.literal(fuzz.pick(ARRAY['1 hour', '0', '-1 day', NULL]::interval[]))
            WHEN t = 'timestamptz'::regtype THEN fuzz.literal(fuzz.pick(ARRAY[NULL, 'infinity', '2000-01-01']::timestamptz[]))
            ELSE format('NULL::%s', t)
        END;
        -- the step an attempt (or a batch of them) refers to
        IF arg = 'step_id' THEN
            step := substring(parts[i] FROM '^''(-?[0-9]+)''')::bigint;
        ELSIF arg = 'step_ids' THEN
            steps := (substring(parts[i] FROM '^''(.*)''::bigint\[\]$'))::bigint[];
        END IF;
    END LOOP;
    RETURN array_to_string(parts, ', ');
END $$;

-- run makes n calls, committing every options.commit_every (so that the
-- state counters are flushed and checked across transactions), and
-- records each outcome.
CREATE PROCEDURE fuzz.run(n integer) LANGUAGE plpgsql AS $$
DECLARE
    total integer := (SELECT sum(weight) FROM fuzz.api WHERE known);
    api fuzz.api;
    call text;
    draw integer;
    rows bigint;
    state text;
    message text;
BEGIN
    FOR i IN 1..n LOOP
        draw := fuzz.r(total);
        SELECT w.fn, w.fn_oid, w.name, w.nargs, w.ndefaults, w.weight, w.known INTO api FROM (
            SELECT a.*, sum(a.weight) OVER (ORDER BY a.name COLLATE "C") AS upto FROM fuzz.api a WHERE a.known) w
         WHERE w.upto > draw ORDER BY w.upto LIMIT 1;
        -- (the arguments are made outside the call's block: a fault of the
        -- generator must stop the test, not pass for a refusal)
        call := format('SELECT count(*) FROM %s(%s)', api.fn_oid::regproc, fuzz.args(api));
        BEGIN
            EXECUTE call INTO rows;
            INSERT INTO fuzz.calls VALUES (i, api.name, NULL, NULL);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
            INSERT INTO fuzz.calls VALUES (i, api.name, state, left(message, 200));
        END;
        IF i % (SELECT commit_every FROM fuzz.options) = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END $$;

-- run_others calls each function the seeded run does not draw from n
-- times, with arguments made the same way.
CREATE PROCEDURE fuzz.run_others(n integer) LANGUAGE plpgsql AS $$
DECLARE
    api fuzz.api;
    call text;
    rows bigint;
    state text;
    message text;
    k integer := 0;
BEGIN
    FOR api IN SELECT * FROM fuzz.api WHERE NOT known ORDER BY name COLLATE "C" LOOP
        FOR i IN 1..n LOOP
            k := k + 1;
            call := format('SELECT count(*) FROM %s(%s)', api.fn_oid::regproc, fuzz.args(api));
            BEGIN
                EXECUTE call INTO rows;
                INSERT INTO fuzz.calls VALUES (-k, api.name, NULL, NULL);
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
                INSERT INTO fuzz.calls VALUES (-k, api.name, state, left(message, 200));
            END;
            COMMIT;
        END LOOP;
    END LOOP;
END $$;

-- What earlier runs found, kept as plain regression checks:
-- "skippable": null (as YAML's "skippable: ~" gives) is false, as for any
-- other field, not a NOT NULL violation of named_steps.
SELECT tasker.register_template('{"namespace": "fz_found", "name": "null_skippable",
    "steps": [{"name": "a", "skippable": null}]}') IS NOT NULL AS registered;
SELECT skippable FROM tasker.named_steps
 WHERE named_task_id = tasker.find_template('fz_found', 'null_skippable');
-- (two recount_states() at once, and recount_states() against writers,
-- are in test/isolation/specs/recount_race.spec)

SELECT setseed(0.42);
CALL fuzz.run(2000);
CALL fuzz.run_others(50);

-- Every call was made; some of each kind succeeded.
SELECT count(*) FILTER (WHERE n > 0) AS seeded_calls,
       count(DISTINCT name) = (SELECT count(*) FROM fuzz.api) AS every_function_called
  FROM fuzz.calls;
SELECT name AS never_succeeded FROM fuzz.api
 WHERE name IN ('register_template', 'register_template_yaml', 'create_task', 'claim_steps', 'complete_step',
                'complete_steps', 'fail_step', 'extend_lease', 'cancel_task', 'resolve_step', 'retry_step')
   AND NOT EXISTS (SELECT 1 FROM fuzz.calls c WHERE c.name = fuzz.api.name AND c.sqlstate IS NULL)
 ORDER BY 1;

-- The classes of SQLSTATE the refusals of the seeded run had.
SELECT string_agg(DISTINCT left(sqlstate, 2), ' ' ORDER BY left(sqlstate, 2)) AS error_classes
  FROM fuzz.calls WHERE sqlstate IS NOT NULL AND name IN (SELECT name FROM fuzz.api WHERE known);

-- Errors that mean a bug, not bad input: none.  (Internal errors; a
-- RAISE without a SQLSTATE; a statement of the API that does not parse or
-- names a missing column or table; a subquery with several rows;
-- constraint violations that escaped the API's own checks; resources.)
SELECT name, sqlstate, message FROM fuzz.calls
 WHERE left(sqlstate, 2) IN ('XX', '2F', '39', '40', '53', '57', '58', '25')
    OR sqlstate IN ('P0001', 'P0004', '42601', '42702', '42703', '42P01', '42P08', '42725',
                    '21000', '23502', '23503', '23505')
 ORDER BY n;

-- And the rows are as consistent as before.
SELECT * FROM tasker.check_invariants();

DROP TABLE fuzz.calls;
DROP SCHEMA fuzz CASCADE;
