--------------------------------------------------------------------------
-- 75_yaml.sql: task templates written in the Rails engine's YAML
-- task-handler format (doc/yaml.md has the whole mapping).
--------------------------------------------------------------------------

CREATE FUNCTION tasker.yaml_to_jsonb(yaml text) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'tasker_yaml_to_jsonb';
COMMENT ON FUNCTION tasker.yaml_to_jsonb(text) IS
    'One YAML document as jsonb (libyaml; YAML 1.1 plain scalars typed, quoted ones strings, aliases and "<<" merges resolved); NULL when the text holds no document.';

-- What a YAML template keeps beyond the template JSON: the Rails engine's
-- handler classes and handler_config, and the document as written.
CREATE TABLE tasker.yaml_templates (
    named_task_id   integer PRIMARY KEY REFERENCES tasker.named_tasks ON DELETE CASCADE,
    task_handler_class text,
    handler_config  jsonb,                    -- the template-level handler_config
    document        jsonb NOT NULL,           -- the YAML as parsed: compared on re-registration
    source          text NOT NULL,            -- the YAML as first registered, comments and all
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker.yaml_templates IS
    'Templates registered from YAML: task_handler_class, template-level handler_config, the parsed document and its source.';

CREATE TABLE tasker.yaml_step_handlers (
    named_step_id   integer PRIMARY KEY REFERENCES tasker.named_steps ON DELETE CASCADE,
    named_task_id   integer NOT NULL REFERENCES tasker.yaml_templates ON DELETE CASCADE,
    handler_class   text,
    handler_config  jsonb,
    CHECK (handler_class IS NOT NULL OR handler_config IS NOT NULL)
);
CREATE INDEX ON tasker.yaml_step_handlers (named_task_id);
COMMENT ON TABLE tasker.yaml_step_handlers IS
    'The handler_class and handler_config of each YAML step template that has them.';

SELECT pg_catalog.pg_extension_config_dump('tasker.yaml_templates', '');
SELECT pg_catalog.pg_extension_config_dump('tasker.yaml_step_handlers', '');

-- _yaml_type names a JSON value's type in YAML's words.
CREATE FUNCTION tasker._yaml_type(value jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE jsonb_typeof(value) WHEN 'object' THEN 'mapping' WHEN 'array' THEN 'sequence'
                ELSE coalesce(jsonb_typeof(value), 'null') END
$$;

-- _yaml_field reads one optional field of a YAML mapping and checks its
-- type, given as a JSON type (object, array, string, number, boolean).
CREATE FUNCTION tasker._yaml_field(obj jsonb, field text, expected text, what text)
    RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    value jsonb := obj -> field;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> expected THEN
        RAISE EXCEPTION 'field "%" of % must be a %, not a %', field, what,
                        CASE expected WHEN 'object' THEN 'mapping' WHEN 'array' THEN 'sequence'
                                      ELSE expected END,
                        tasker._yaml_type(value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END $$;

-- _yaml_check_keys refuses a field the YAML format does not know (a typo
-- such as "depends_on_stpe" must not drop a dependency).
CREATE FUNCTION tasker._yaml_check_keys(obj jsonb, allowed text[], what text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown text;
BEGIN
    SELECT k INTO unknown FROM jsonb_object_keys(obj) AS k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown field "%" in %', unknown, what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Known fields: %s.', array_to_string(allowed, ', '));
    END IF;
END $$;

-- _yaml_handler_queue is the queue of an external step named by a Ruby
-- handler class: each "::" segment in snake_case (ActiveSupport's
-- underscore), joined by "."; leading segments are dropped while the name
-- is longer than a queue may be (50).
--   OrderProcessing::StepHandler::ValidateOrder -> order_processing.step_handler.validate_order
CREATE FUNCTION tasker._yaml_handler_queue(handler_class text, step_name text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    segments text[];
    queue text;
BEGIN
    IF handler_class !~ '^(::)?[A-Z][A-Za-z0-9_]*(::[A-Z][A-Za-z0-9_]*)*$' THEN
        RAISE EXCEPTION 'handler_class "%" of step template "%" is not a Ruby class name', handler_class, step_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A handler class is a constant path such as "OrderProcessing::StepHandler::ValidateOrder".';
    END IF;
    segments := ARRAY(
        SELECT lower(regexp_replace(regexp_replace(seg, '([A-Z0-9]+)([A-Z][a-z])', '\1_\2', 'g'),
                                    '([a-z0-9])([A-Z])', '\1_\2', 'g'))
          FROM unnest(string_to_array(regexp_replace(handler_class, '^::', ''), '::'))
               WITH ORDINALITY AS u(seg, n)
         ORDER BY n);
    queue := array_to_string(segments, '.');
    WHILE length(queue) > 50 AND cardinality(segments) > 1 LOOP
        segments := segments[2:];
        queue := array_to_string(segments, '.');
    END LOOP;
    IF length(queue) > 50 THEN
        RAISE EXCEPTION 'handler_class "%" of step template "%" is too long to name a queue', handler_class, step_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Its last segment makes the %s-character queue name "%s"; a queue name has at most 50.', length(queue), queue),
                  HINT = 'Name the step''s queue with "queue:".';
    END IF;
    RETURN queue;
END $$;

-- _yaml_context_schema drops the JSON-schema annotations that never
-- reject a value (default, examples, $comment, deprecated, readOnly,
-- writeOnly), where tasker's schema checker looks: the schema, its
-- properties and items.  Validation keywords stay, so that one tasker
-- cannot enforce (minimum, pattern, ...) is refused by register_template.
CREATE FUNCTION tasker._yaml_context_schema(schema jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(schema) IS DISTINCT FROM 'object' THEN
        RETURN schema;
    END IF;
    schema := schema - ARRAY['default', 'examples', '$comment', 'deprecated', 'readOnly', 'writeOnly'];
    IF jsonb_typeof(schema -> 'properties') = 'object' THEN
        schema := jsonb_set(schema, '{properties}',
            (SELECT coalesce(jsonb_object_agg(p.key, tasker._yaml_context_schema(p.value)), '{}')
               FROM jsonb_each(schema -> 'properties') p));
    END IF;
    IF schema ? 'items' THEN
        schema := jsonb_set(schema, '{items}', tasker._yaml_context_schema(schema -> 'items'));
    END IF;
    RETURN schema;
END $$;

-- _yaml_template maps a parsed YAML task handler to
-- {"template": <register_template input>, "handlers": [{"step",
-- "handler_class", "handler_config", "derived_queue"}, ...]}.
CREATE FUNCTION tasker._yaml_template(doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    top_fields CONSTANT text[] := ARRAY['name', 'namespace_name', 'version', 'description',
        'task_handler_class', 'module_namespace', 'concurrent', 'default_dependent_system',
        'named_steps', 'schema', 'step_templates', 'handler_config', 'environments',
        'identity_strategy'];
    step_fields CONSTANT text[] := ARRAY['name', 'description', 'dependent_system',
        'default_retryable', 'default_retry_limit', 'skippable', 'handler_class', 'handler_config',
        'depends_on_step', 'depends_on_steps', 'depends_on', 'handler', 'queue', 'timeout',
        'retryable', 'max_attempts'];
    what CONSTANT text := 'the YAML template';
    field text;
    step jsonb;
    step_what text;
    step_name text;
    i integer := 0;
    names text[] := '{}';
    steps jsonb := '[]';
    handlers jsonb := '[]';
    handler_class text;
    derived text;
    derived_by jsonb := '{}';   -- derived queue -> handler class
    listed jsonb;
    missing text;
    template jsonb;
BEGIN
    IF doc IS NULL OR jsonb_typeof(doc) = 'null' THEN
        RAISE EXCEPTION 'YAML template is empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write a mapping with name, namespace_name, version and step_templates.';
    END IF;
    IF jsonb_typeof(doc) <> 'object' THEN
        RAISE EXCEPTION 'YAML template must be a mapping, not a %', tasker._yaml_type(doc)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write a mapping with name, namespace_name, version and step_templates.';
    END IF;
    PERFORM tasker._yaml_check_keys(doc, top_fields, what);
    FOREACH field IN ARRAY ARRAY['name', 'namespace_name', 'version', 'description',
            'default_dependent_system', 'identity_strategy', 'task_handler_class',
            'module_namespace'] LOOP
        PERFORM tasker._yaml_field(doc, field, 'string', what);
    END LOOP;
    PERFORM tasker._yaml_field(doc, 'concurrent', 'boolean', what);
    PERFORM tasker._yaml_field(doc, 'schema', 'object', what);
    PERFORM tasker._yaml_field(doc, 'handler_config', 'object', what);
    PERFORM tasker._yaml_field(doc, 'environments', 'object', what);

    -- (before the loop, whose cost grows with the square of the steps)
    PERFORM tasker._check_count('tasker.max_template_steps',
        jsonb_array_length(coalesce(tasker._yaml_field(doc, 'step_templates', 'array', what), '[]')),
        format('template "%s.%s"', coalesce(doc ->> 'namespace_name', 'default'), doc ->> 'name'));
    FOR step IN SELECT value FROM jsonb_array_elements(
                    coalesce(tasker._yaml_field(doc, 'step_templates', 'array', what), '[]')) LOOP
        i := i + 1;
        IF jsonb_typeof(step) <> 'object' THEN
            RAISE EXCEPTION 'step_templates entry % must be a mapping, not a %', i, tasker._yaml_type(step)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        step_name := tasker._yaml_field(step, 'name', 'string', format('step_templates entry %s', i)) #>> '{}';
        IF step_name IS NULL THEN
            RAISE EXCEPTION 'step_templates entry % has no "name"', i
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        step_what := format('step template "%s"', step_name);
        PERFORM tasker._yaml_check_keys(step, step_fields, step_what);
        handler_class := tasker._yaml_field(step, 'handler_class', 'string', step_what) #>> '{}';
        PERFORM tasker._yaml_field(step, 'handler_config', 'object', step_what);

        -- handler_class names the queue of an external step, unless the
        -- step names a SQL handler or its queue
        derived := NULL;
        IF handler_class IS NOT NULL THEN
            derived := tasker._yaml_handler_queue(handler_class, step_name);
            IF nullif(step -> 'handler', 'null') IS NOT NULL
               OR nullif(step -> 'queue', 'null') IS NOT NULL THEN
                derived := NULL;
            ELSIF derived_by ->> derived <> handler_class THEN
                RAISE EXCEPTION 'handler classes "%" and "%" both map to queue "%"',
                                derived_by ->> derived, handler_class, derived
                    USING ERRCODE = 'duplicate_object',
                          HINT = format('Name the queue of step template "%s" with "queue:".', step_name);
            ELSE
                derived_by := derived_by || jsonb_build_object(derived, handler_class);
            END IF;
        END IF;

        steps := steps || jsonb_build_array(
            (step - 'handler_class' - 'handler_config')
            || CASE WHEN derived IS NULL THEN '{}' ELSE jsonb_build_object('queue', derived) END);
        IF handler_class IS NOT NULL OR jsonb_typeof(step -> 'handler_config') = 'object' THEN
            handlers := handlers || jsonb_build_array(jsonb_build_object(
                'step', step_name, 'handler_class', handler_class,
                'handler_config', nullif(step -> 'handler_config', 'null'),
                'derived_queue', derived));
        END IF;
        names := names || step_name;
    END LOOP;

    -- named_steps, when given, lists exactly the step templates
    listed := tasker._yaml_field(doc, 'named_steps', 'array', what);
    IF listed IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(listed) e WHERE jsonb_typeof(e) <> 'string') THEN
            RAISE EXCEPTION 'named_steps must list step names as strings'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT n INTO missing FROM jsonb_array_elements_text(listed) WITH ORDINALITY AS l(n, o)
         WHERE n <> ALL (names) ORDER BY o LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'named_steps lists "%", but no step template defines it', missing
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT n INTO missing FROM unnest(names) WITH ORDINALITY AS u(n, o)
         WHERE NOT listed ? n ORDER BY o LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'step template "%" is missing from named_steps', missing
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    SELECT jsonb_object_agg(f.key, f.value) INTO template
      FROM jsonb_each(jsonb_build_object(
               'namespace', doc -> 'namespace_name',
               'name', doc -> 'name',
               'version', doc -> 'version',
               'description', doc -> 'description',
               'identity_strategy', doc -> 'identity_strategy',
               'context_schema', tasker._yaml_context_schema(doc -> 'schema'),
               'default_dependent_system', doc -> 'default_dependent_system',
               'steps', steps)) f
     WHERE jsonb_typeof(f.value) IS DISTINCT FROM 'null';
    RETURN jsonb_build_object('template', template, 'handlers', handlers);
END $$;

CREATE FUNCTION tasker.yaml_template(yaml text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tasker._yaml_template(tasker.yaml_to_jsonb(yaml)) -> 'template'
$$;
COMMENT ON FUNCTION tasker.yaml_template(text) IS
    'The register_template JSON a Rails-style YAML task handler maps to (nothing is registered).';

CREATE FUNCTION tasker.register_template_yaml(yaml text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doc jsonb := tasker.yaml_to_jsonb(yaml);
    mapped jsonb := tasker._yaml_template(doc);
    handler record;
    other record;
    new_id bigint;
    stored jsonb;
BEGIN
    PERFORM tasker._authorize('submitter',
        coalesce(mapped #>> '{template,namespace}', 'default'), 'namespace');
    -- a derived queue must not already serve another handler class
    FOR handler IN SELECT h.step, h.handler_class, h.derived_queue
                     FROM jsonb_to_recordset(mapped -> 'handlers')
                          AS h(step text, handler_class text, derived_queue text)
                    WHERE h.derived_queue IS NOT NULL LOOP
        SELECT y.handler_class, n.name AS namespace, t.name, t.version INTO other
          FROM tasker.named_steps s
          JOIN tasker.yaml_step_handlers y ON y.named_step_id = s.named_step_id
          JOIN tasker.named_tasks t ON t.named_task_id = s.named_task_id
          JOIN tasker.namespaces n ON n.namespace_id = t.namespace_id
         WHERE s.queue = handler.derived_queue AND s.handler IS NULL
           AND y.handler_class <> handler.handler_class
         ORDER BY s.named_step_id LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'handler_class "%" of step template "%" maps to queue "%", which already serves handler_class "%"',
                            handler.handler_class, handler.step, handler.derived_queue, other.handler_class
                USING ERRCODE = 'duplicate_object',
                      DETAIL = format('Template %s.%s %s has a step of that class on that queue.',
                                      other.namespace, other.name, other.version),
                      HINT = format('Name the queue of step template "%s" with "queue:".', handler.step);
        END IF;
    END LOOP;

    new_id := tasker.register_template(mapped -> 'template');

    -- the same version again: the same document returns the id
    SELECT y.document INTO stored FROM tasker.yaml_templates y WHERE y.named_task_id = new_id;
    IF FOUND THEN
        IF stored = doc THEN
            RETURN new_id;
        END IF;
        RAISE EXCEPTION 'template %.% version % is already registered with a different YAML document',
            mapped #>> '{template,namespace}', mapped #>> '{template,name}', mapped #>> '{template,version}'
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'The template is the same, but handler_class, handler_config or another kept field differs.',
                  HINT = 'Registered versions are immutable: register the change as a new version.';
    END IF;

    INSERT INTO tasker.yaml_templates (named_task_id, task_handler_class, handler_config, document, source)
    VALUES (new_id, doc ->> 'task_handler_class', nullif(doc -> 'handler_config', 'null'), doc, yaml);
    INSERT INTO tasker.yaml_step_handlers (named_step_id, named_task_id, handler_class, handler_config)
    SELECT s.named_step_id, new_id, h.handler_class, h.handler_config
      FROM jsonb_to_recordset(mapped -> 'handlers') AS h(step text, handler_class text, handler_config jsonb)
      JOIN tasker.named_steps s ON s.named_task_id = new_id AND s.name = h.step;
    RETURN new_id;
END $$;
COMMENT ON FUNCTION tasker.register_template_yaml(text) IS
    'Registers a task template written in the Rails engine''s YAML task-handler format (see doc/yaml.md); the same document again returns the same id.';

CREATE FUNCTION tasker.step_handler(step_id bigint, OUT handler_class text, OUT handler_config jsonb)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT tasker._authorize_steps(ARRAY[step_handler.step_id]);
    SELECT y.handler_class, y.handler_config
      FROM tasker.workflow_steps s
      JOIN tasker.yaml_step_handlers y ON y.named_step_id = s.named_step_id
     WHERE s.workflow_step_id = step_handler.step_id
$$;
COMMENT ON FUNCTION tasker.step_handler(bigint) IS
    'The handler_class and handler_config a step''s YAML template gave it (NULLs when none), for the external worker that claimed it.';
