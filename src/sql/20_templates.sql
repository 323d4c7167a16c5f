--------------------------------------------------------------------------
-- 20_templates.sql: registering task templates, and the context schema.
--------------------------------------------------------------------------

-- _parse_semver returns {major, minor, patch} or raises 22P02.
CREATE FUNCTION tasker._parse_semver(version text) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parts text[];
BEGIN
    parts := regexp_match(version, '^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$');
    IF parts IS NULL THEN
        RAISE EXCEPTION 'invalid version "%"', version
            USING ERRCODE = 'invalid_text_representation',
                  DETAIL = 'A version is MAJOR.MINOR.PATCH with non-negative integers, such as "1.0.0".';
    END IF;
    RETURN ARRAY[parts[1]::integer, parts[2]::integer, parts[3]::integer];
END $$;

-- _json_field reads one optional field of a JSON object and checks its type.
CREATE FUNCTION tasker._json_field(obj jsonb, field text, expected text, what text)
    RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    value jsonb := obj -> field;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> expected THEN
        RAISE EXCEPTION '% field "%" must be a JSON %, not %', what, field, expected, jsonb_typeof(value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;

-- _check_keys refuses unknown fields, so that a typo such as "depend_on"
-- is an error rather than a silently missing dependency.
CREATE FUNCTION tasker._check_keys(obj jsonb, allowed text[], what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown text;
BEGIN
    SELECT k INTO unknown FROM jsonb_object_keys(obj) AS k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown % field "%"', what, unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Known fields: %s.', array_to_string(allowed, ', '));
    END IF;
END $$;

-- _check_name validates a namespace, template, step or queue name.
CREATE FUNCTION tasker._check_name(name text, what text, max_length integer DEFAULT 128) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]*$' OR length(name) > max_length THEN
        RAISE EXCEPTION 'invalid % name "%"', what, coalesce(name, 'null')
            USING ERRCODE = 'invalid_name',
                  DETAIL = format('A %s name is 1 to %s letters, digits, "_", ".", ":" or "-", starting with a letter, digit or "_".', what, max_length);
    END IF;
    RETURN name;
END $$;

-- _check_context_schema validates the supported JSON-schema subset:
-- type, required, properties, enum, items, additionalProperties (a boolean)
-- and the annotations description, title and $schema; other keywords are refused.
CREATE FUNCTION tasker._check_context_schema(s jsonb, path text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t jsonb;
    prop record;
BEGIN
    IF jsonb_typeof(s) <> 'object' THEN
        RAISE EXCEPTION 'context_schema at "%" must be a JSON object', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tasker._check_keys(s, ARRAY['type', 'required', 'properties', 'enum', 'items',
                                        'description', 'title', '$schema', 'additionalProperties'],
                               'context_schema');
    t := s -> 'type';
    IF t IS NOT NULL THEN
        IF jsonb_typeof(t) = 'string' THEN
            t := jsonb_build_array(t);
        END IF;
        IF jsonb_typeof(t) <> 'array' OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(t) e
                WHERE e NOT IN ('"string"', '"number"', '"integer"', '"boolean"',
                                '"object"', '"array"', '"null"')) THEN
            RAISE EXCEPTION 'context_schema at "%" has an unsupported type %', path, s -> 'type'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Types are string, number, integer, boolean, object, array and null.';
        END IF;
    END IF;
    IF s ? 'required' AND (jsonb_typeof(s -> 'required') <> 'array' OR EXISTS (
           SELECT 1 FROM jsonb_array_elements(s -> 'required') e WHERE jsonb_typeof(e) <> 'string')) THEN
        RAISE EXCEPTION 'context_schema at "%": "required" must be an array of strings', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s ? 'enum' AND jsonb_typeof(s -> 'enum') <> 'array' THEN
        RAISE EXCEPTION 'context_schema at "%": "enum" must be an array', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s ? 'additionalProperties' AND jsonb_typeof(s -> 'additionalProperties') <> 'boolean' THEN
        RAISE EXCEPTION 'context_schema at "%": "additionalProperties" must be true or false', path
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF s ? 'properties' THEN
        IF jsonb_typeof(s -> 'properties') <> 'object' THEN
            RAISE EXCEPTION 'context_schema at "%": "properties" must be an object', path
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR prop IN SELECT key, value FROM jsonb_each(s -> 'properties') LOOP
            PERFORM tasker._check_context_schema(prop.value, path || '.' || prop.key);
        END LOOP;
    END IF;
    IF s ? 'items' THEN
        PERFORM tasker._check_context_schema(s -> 'items', path || '[]');
    END IF;
END $$;

-- context_violation returns the first way value breaks the schema (naming
-- the field by its path), or NULL when it conforms.
CREATE FUNCTION tasker.context_violation(schema jsonb, value jsonb, path text DEFAULT '$')
    RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    types jsonb;
    actual text := jsonb_typeof(value);
    field text;
    prop record;
    element record;
    problem text;
BEGIN
    IF schema IS NULL THEN
        RETURN NULL;
    END IF;
    types := schema -> 'type';
    IF jsonb_typeof(types) = 'string' THEN
        types := jsonb_build_array(types);
    END IF;
    IF types IS NOT NULL AND NOT (
           types ? actual
        OR (actual = 'number' AND types ? 'integer' AND value::text ~ '^-?[0-9]+$')) THEN
        RETURN format('field "%s" must be of type %s, not %s', path,
                      (SELECT string_agg(t, ' or ') FROM jsonb_array_elements_text(types) t), actual);
    END IF;
    -- (equality, not @>: containment would let [1] match an enum member [1, 2])
    IF schema ? 'enum' AND NOT EXISTS (
           SELECT 1 FROM jsonb_array_elements(schema -> 'enum') AS m(member)
            WHERE m.member = context_violation.value) THEN
        RETURN format('field "%s" must be one of %s', path, schema -> 'enum');
    END IF;
    IF actual = 'object' THEN
        FOR field IN SELECT jsonb_array_elements_text(coalesce(schema -> 'required', '[]')) LOOP
            IF NOT value ? field THEN
                RETURN format('required field "%s.%s" is missing', path, field);
            END IF;
        END LOOP;
        IF schema -> 'additionalProperties' = 'false' THEN
            SELECT k INTO field FROM jsonb_object_keys(value) k
             WHERE NOT coalesce(schema -> 'properties', '{}') ? k ORDER BY k LIMIT 1;
            IF field IS NOT NULL THEN
                RETURN format('field "%s.%s" is not allowed', path, field);
            END IF;
        END IF;
        FOR prop IN SELECT j.k AS key, j.v AS sub FROM jsonb_each(coalesce(schema -> 'properties', '{}')) AS j(k, v) LOOP
            IF value ? prop.key THEN
                problem := tasker.context_violation(prop.sub, value -> prop.key, path || '.' || prop.key);
                IF problem IS NOT NULL THEN
                    RETURN problem;
                END IF;
            END IF;
        END LOOP;
    ELSIF actual = 'array' AND schema ? 'items' THEN
        FOR element IN SELECT a.e, a.n - 1 AS i FROM jsonb_array_elements(value) WITH ORDINALITY AS a(e, n) LOOP
            problem := tasker.context_violation(schema -> 'items', element.e, path || '[' || element.i || ']');
            IF problem IS NOT NULL THEN
                RETURN problem;
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION tasker.context_violation(jsonb, jsonb, text) IS
    'The first way a JSON value breaks a context schema (type, required, properties, additionalProperties, enum, items), or NULL.';

-- _resolve_handler turns a handler name into a regprocedure after checking
-- that it is (jsonb) RETURNS jsonb and that the caller may execute it.
CREATE FUNCTION tasker._resolve_handler(handler text, step_name text) RETURNS regprocedure
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fn regprocedure;
    rettype oid;
    argtypes oidvector;
    kind "char";
    retset boolean;
BEGIN
    BEGIN
        fn := to_regprocedure(CASE WHEN handler ~ '\(' THEN handler ELSE handler || '(jsonb)' END);
    EXCEPTION WHEN OTHERS THEN
        fn := NULL;
    END;
    IF fn IS NULL THEN
        RAISE EXCEPTION 'handler function "%" of step "%" does not exist', handler, step_name
            USING ERRCODE = 'undefined_function',
                  HINT = 'Name a schema-qualified function (jsonb) RETURNS jsonb, e.g. "app.charge(jsonb)".';
    END IF;
    SELECT p.prorettype, p.proargtypes, p.prokind, p.proretset INTO rettype, argtypes, kind, retset
      FROM pg_proc p WHERE p.oid = fn;
    -- (oidvector is zero-based: compare its element, not an oid[] cast of it)
    IF kind <> 'f' OR retset OR rettype <> 'jsonb'::regtype
       OR cardinality(argtypes::oid[]) <> 1 OR argtypes[0] <> 'jsonb'::regtype THEN
        RAISE EXCEPTION 'handler function % of step "%" must take (jsonb) and return jsonb', fn, step_name
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    -- (the caller, not current_user: register_template runs as the
    -- extension's owner, and the handler will run as the caller)
    IF NOT has_function_privilege(tasker._caller(), fn, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for handler function % of step "%"', fn, step_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Role %s may not execute it, and handlers run as the role that registers the template.', tasker._caller());
    END IF;
    RETURN fn;
END $$;

-- _step_array reads depends_on (or the Rails engine's depends_on_step /
-- depends_on_steps) as an array of names.
CREATE FUNCTION tasker._step_dependencies(step jsonb, step_name text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deps text[] := '{}';
    field text;
    value jsonb;
BEGIN
    FOREACH field IN ARRAY ARRAY['depends_on', 'depends_on_step', 'depends_on_steps'] LOOP
        value := step -> field;
        CONTINUE WHEN value IS NULL OR jsonb_typeof(value) = 'null';
        IF jsonb_typeof(value) = 'string' THEN
            deps := deps || (value #>> '{}');
        ELSIF jsonb_typeof(value) = 'array' THEN
            IF EXISTS (SELECT 1 FROM jsonb_array_elements(value) e WHERE jsonb_typeof(e) <> 'string') THEN
                RAISE EXCEPTION 'field "%" of step "%" must list step names as strings', field, step_name
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            deps := deps || ARRAY(SELECT jsonb_array_elements_text(value));
        ELSE
            RAISE EXCEPTION 'field "%" of step "%" must be a step name or an array of them', field, step_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT d FROM unnest(deps) d ORDER BY d);
END $$;

-- _dependent_system_id finds or creates a dependent system by name.
CREATE FUNCTION tasker._dependent_system_id(system_name text) RETURNS integer
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id integer;
BEGIN
    IF system_name IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM tasker._check_name(system_name, 'dependent system');
    INSERT INTO tasker.dependent_systems (name) VALUES (system_name)
        ON CONFLICT (name) DO NOTHING RETURNING dependent_system_id INTO id;
    IF id IS NULL THEN
        SELECT dependent_system_id INTO id FROM tasker.dependent_systems WHERE name = system_name;
    END IF;
    RETURN id;
END $$;

-- _normalize_template checks a template document and returns it with every
-- default filled in, steps in dependency order: the canonical body that is
-- stored and compared when the same version is registered again.
-- (IntervalStyle is pinned so that the stored timeout text, and so the
-- comparison of bodies, does not depend on the session's setting.)
CREATE FUNCTION tasker._normalize_template(template jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
    SET IntervalStyle = postgres AS $$
DECLARE
    ns text;
    tname text;
    ver text;
    strategy text;
    steps jsonb;
    step jsonb;
    step_name text;
    names text[] := '{}';
    name_index jsonb;
    first_duplicate bigint;
    default_system jsonb;
    deps text[];
    dep text;
    edge_from integer[] := '{}';
    edge_to integer[] := '{}';
    normalized jsonb[] := '{}';
    ordered jsonb := '[]';
    order_idx integer[];
    idx integer;
    handler regprocedure;
    queue text;
    max_attempts jsonb;
    timeout_value jsonb;
    timeout interval;
    retryable jsonb;
    i integer;
BEGIN
    IF template IS NULL THEN
        RAISE EXCEPTION 'template must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(template) <> 'object' THEN
        RAISE EXCEPTION 'template must be a JSON object, not %', jsonb_typeof(template)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tasker._check_keys(template, ARRAY['namespace', 'name', 'version', 'description',
        'identity_strategy', 'context_schema', 'default_dependent_system', 'steps'], 'template');

    ns := coalesce(tasker._json_field(template, 'namespace', 'string', 'template') #>> '{}', 'default');
    PERFORM tasker._check_name(ns, 'namespace', 50);
    tname := tasker._json_field(template, 'name', 'string', 'template') #>> '{}';
    IF tname IS NULL THEN
        RAISE EXCEPTION 'template has no "name"' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM tasker._check_name(tname, 'template');
    ver := coalesce(tasker._json_field(template, 'version', 'string', 'template') #>> '{}', '0.1.0');
    PERFORM tasker._parse_semver(ver);
    strategy := coalesce(tasker._json_field(template, 'identity_strategy', 'string', 'template') #>> '{}',
                         'always_unique');
    IF strategy NOT IN ('always_unique', 'strict', 'caller_provided') THEN
        RAISE EXCEPTION 'unknown identity_strategy "%"', strategy
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use always_unique, strict or caller_provided.';
    END IF;
    IF template ? 'context_schema' AND jsonb_typeof(template -> 'context_schema') <> 'null' THEN
        PERFORM tasker._check_context_schema(template -> 'context_schema', '$');
    END IF;
    PERFORM tasker._json_field(template, 'description', 'string', 'template');
    PERFORM tasker._json_field(template, 'default_dependent_system', 'string', 'template');

    steps := coalesce(tasker._json_field(template, 'steps', 'array', 'template'), '[]');
    PERFORM tasker._check_count('tasker.max_template_steps', jsonb_array_length(steps),
                                format('template "%s.%s"', ns, tname));
    -- read once: template may be a TOASTed value, detoasted by every read
    default_system := template -> 'default_dependent_system';

    -- first pass: names.  Every lookup below is by an index or a sort, never
    -- a search of the names seen so far: templates may have 10,000 steps.
    SELECT min(d.step_pos) INTO first_duplicate
      FROM (SELECT x.step_pos,
                   row_number() OVER (PARTITION BY x.e ->> 'name' ORDER BY x.step_pos) AS nth
              FROM jsonb_array_elements(steps) WITH ORDINALITY AS x(e, step_pos)
             WHERE jsonb_typeof(x.e -> 'name') = 'string') d
     WHERE d.nth > 1;
    FOR step IN SELECT value FROM jsonb_array_elements(steps) LOOP
        IF jsonb_typeof(step) <> 'object' THEN
            RAISE EXCEPTION 'every step must be a JSON object, not %', jsonb_typeof(step)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        step_name := tasker._json_field(step, 'name', 'string', 'step') #>> '{}';
        IF step_name IS NULL THEN
            RAISE EXCEPTION 'step % has no "name"', cardinality(names) + 1
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM tasker._check_name(step_name, 'step');
        IF cardinality(names) + 1 = first_duplicate THEN
            RAISE EXCEPTION 'duplicate step name "%"', step_name
                USING ERRCODE = 'duplicate_object';
        END IF;
        names := names || step_name;
    END LOOP;

    -- second pass: fields and edges
    SELECT jsonb_object_agg(u.step_name, u.step_pos) INTO name_index
      FROM unnest(names) WITH ORDINALITY AS u(step_name, step_pos);
    i := 0;
    FOR step IN SELECT value FROM jsonb_array_elements(steps) LOOP
        i := i + 1;
        step_name := names[i];
        PERFORM tasker._check_keys(step, ARRAY['name', 'description', 'depends_on', 'depends_on_step',
            'depends_on_steps', 'handler', 'queue', 'retryable', 'default_retryable', 'max_attempts',
            'default_retry_limit', 'timeout', 'skippable', 'dependent_system'], 'step');
        deps := tasker._step_dependencies(step, step_name);
        PERFORM tasker._check_count('tasker.max_step_dependencies', cardinality(deps),
                                    format('step "%s"', step_name));
        FOREACH dep IN ARRAY deps LOOP
            IF dep = step_name THEN
                RAISE EXCEPTION 'step "%" depends on itself', step_name
                    USING ERRCODE = 'invalid_object_definition';
            END IF;
            idx := (name_index ->> dep)::integer;
            IF idx IS NULL THEN
                RAISE EXCEPTION 'step "%" depends on unknown step "%"', step_name, dep
                    USING ERRCODE = 'undefined_object';
            END IF;
            edge_from := edge_from || idx;
            edge_to := edge_to || i;
        END LOOP;

        handler := NULL;
        IF tasker._json_field(step, 'handler', 'string', 'step') IS NOT NULL THEN
            handler := tasker._resolve_handler(step ->> 'handler', step_name);
        END IF;
        queue := coalesce(tasker._json_field(step, 'queue', 'string', 'step') #>> '{}', ns);
        PERFORM tasker._check_name(queue, 'queue', 50);

        retryable := coalesce(tasker._json_field(step, 'retryable', 'boolean', 'step'),
                              tasker._json_field(step, 'default_retryable', 'boolean', 'step'),
                              'true');
        max_attempts := coalesce(tasker._json_field(step, 'max_attempts', 'number', 'step'),
                                 tasker._json_field(step, 'default_retry_limit', 'number', 'step'),
                                 '3');
        IF max_attempts::text !~ '^[0-9]+$' OR max_attempts::numeric < 1 OR max_attempts::numeric > 1000000 THEN
            RAISE EXCEPTION 'max_attempts of step "%" must be a positive integer, not %', step_name, max_attempts
                USING ERRCODE = 'invalid_parameter_value';
        END IF;

        timeout := NULL;
        timeout_value := step -> 'timeout';
        IF timeout_value IS NOT NULL AND jsonb_typeof(timeout_value) <> 'null' THEN
            BEGIN
                timeout := CASE jsonb_typeof(timeout_value)
                    WHEN 'number' THEN make_interval(secs => timeout_value::text::double precision)
                    WHEN 'string' THEN (timeout_value #>> '{}')::interval
                END;
            EXCEPTION WHEN data_exception THEN
                timeout := NULL;
            END;
            IF timeout IS NULL OR timeout <= interval '0' THEN
                RAISE EXCEPTION 'timeout of step "%" must be a positive number of seconds or interval, not %',
                    step_name, timeout_value
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END IF;
        PERFORM tasker._json_field(step, 'skippable', 'boolean', 'step');
        PERFORM tasker._json_field(step, 'description', 'string', 'step');
        PERFORM tasker._json_field(step, 'dependent_system', 'string', 'step');

        normalized := normalized || jsonb_build_object(
            'name', step_name,
            'description', step -> 'description',
            'depends_on', to_jsonb(deps),
            'handler', handler::text,
            'queue', queue,
            'retryable', retryable,
            'max_attempts', max_attempts::text::integer,
            'timeout', timeout::text,
            'skippable', coalesce(tasker._json_field(step, 'skippable', 'boolean', 'step'), 'false'),
            'dependent_system', coalesce(step -> 'dependent_system', default_system));
    END LOOP;

    order_idx := tasker._topological_order(names, edge_from, edge_to);
    SELECT coalesce(jsonb_agg(n.body ORDER BY o.step_pos), '[]') INTO ordered
      FROM unnest(order_idx) WITH ORDINALITY AS o(step_idx, step_pos)
      JOIN unnest(normalized) WITH ORDINALITY AS n(body, step_idx) ON n.step_idx = o.step_idx;

    RETURN jsonb_build_object(
        'namespace', ns,
        'name', tname,
        'version', ver,
        'description', template -> 'description',
        'identity_strategy', strategy,
        'context_schema', template -> 'context_schema',
        'default_dependent_system', template -> 'default_dependent_system',
        'steps', ordered);
END $$;

CREATE FUNCTION tasker.register_template(template jsonb) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    body jsonb := tasker._normalize_template(template);
    ns_id integer;
    existing record;
    new_id integer;
    step jsonb;
    pos integer := 0;
BEGIN
    PERFORM tasker._authorize('submitter', body ->> 'namespace', 'namespace');
    -- one registration of a name at a time, so two sessions registering
    -- the same version cannot both insert
    PERFORM pg_advisory_xact_lock(hashtext('tasker.register_template'),
                                  hashtext(body ->> 'namespace' || '/' || (body ->> 'name')));

    INSERT INTO tasker.namespaces (name) VALUES (body ->> 'namespace')
        ON CONFLICT (name) DO NOTHING RETURNING namespace_id INTO ns_id;
    IF ns_id IS NULL THEN
        SELECT namespace_id INTO ns_id FROM tasker.namespaces WHERE name = body ->> 'namespace';
    END IF;

    SELECT named_task_id, t.template INTO existing
      FROM tasker.named_tasks t
     WHERE namespace_id = ns_id AND name = body ->> 'name' AND version = body ->> 'version';
    IF FOUND THEN
        IF existing.template = body THEN
            RETURN existing.named_task_id;
        END IF;
        RAISE EXCEPTION 'template %.% version % is already registered with a different body',
            body ->> 'namespace', body ->> 'name', body ->> 'version'
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Registered versions are immutable: register the change as a new version.';
    END IF;

    INSERT INTO tasker.named_tasks (namespace_id, name, version, version_order, description,
                                    identity_strategy, context_schema, default_dependent_system_id,
                                    template, owner_role)
    VALUES (ns_id, body ->> 'name', body ->> 'version', tasker._parse_semver(body ->> 'version'),
            body ->> 'description', body ->> 'identity_strategy',
            nullif(body -> 'context_schema', 'null'),
            tasker._dependent_system_id(body ->> 'default_dependent_system'), body,
            tasker._caller())
    RETURNING named_task_id INTO new_id;

    FOR step IN SELECT value FROM jsonb_array_elements(body -> 'steps') LOOP
        pos := pos + 1;
        INSERT INTO tasker.named_steps (named_task_id, name, position, description, dependent_system_id,
                                        handler, queue, retryable, max_attempts, timeout, skippable)
        VALUES (new_id, step ->> 'name', pos, step ->> 'description',
                tasker._dependent_system_id(step ->> 'dependent_system'),
                (step ->> 'handler')::regprocedure, step ->> 'queue', (step ->> 'retryable')::boolean,
                (step ->> 'max_attempts')::integer, (step ->> 'timeout')::interval,
                (step ->> 'skippable')::boolean);
    END LOOP;

    INSERT INTO tasker.named_step_edges (named_task_id, from_named_step_id, to_named_step_id)
    SELECT new_id, p.named_step_id, c.named_step_id
      FROM jsonb_array_elements(body -> 'steps') s
      CROSS JOIN LATERAL jsonb_array_elements_text(s -> 'depends_on') d
      JOIN tasker.named_steps c ON c.named_task_id = new_id AND c.name = s ->> 'name'
      JOIN tasker.named_steps p ON p.named_task_id = new_id AND p.name = d;

    RETURN new_id;
END $$;
COMMENT ON FUNCTION tasker.register_template(jsonb) IS
    'Validates and stores a task template version; registering the same body again returns its id.';

CREATE VIEW tasker.templates AS
SELECT t.named_task_id,
       n.name AS namespace,
       t.name,
       t.version,
       t.description,
       t.identity_strategy,
       (SELECT count(*) FROM tasker.named_steps s WHERE s.named_task_id = t.named_task_id) AS step_count,
       (SELECT array_agg(s.name ORDER BY s.position) FROM tasker.named_steps s
         WHERE s.named_task_id = t.named_task_id) AS steps,
       t.owner_role,
       t.created_at
  FROM tasker.named_tasks t
  JOIN tasker.namespaces n USING (namespace_id);
COMMENT ON VIEW tasker.templates IS 'Registered task templates, one row per version.';
