--------------------------------------------------------------------------
-- 70_operations.sql: what an operator reads at a psql prompt — DAG
-- pictures, and views with the names one would guess.
--------------------------------------------------------------------------

-- _graph renders nodes and edges as Mermaid or Graphviz DOT, nodes
-- coloured by state.
CREATE FUNCTION tasker._graph(nodes jsonb, edges jsonb, format text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    colours CONSTANT jsonb := '{"pending": "#e0e0e0", "in_progress": "#90caf9",
        "waiting_for_retry": "#ffe082", "complete": "#a5d6a7", "error": "#ef9a9a",
        "cancelled": "#bdbdbd", "resolved_manually": "#ce93d8", "template": "#ffffff"}';
    out text;
BEGIN
    IF format = 'mermaid' THEN
        out := 'graph TD' || E'\n';
        out := out || coalesce((SELECT string_agg(format('    n%s["%s<br/>%s"]:::%s', n->>'id',
                       replace(n->>'name', '"', '#quot;'), n->>'state', n->>'state'), E'\n' ORDER BY (n->>'id')::bigint)
                  FROM jsonb_array_elements(nodes) n) || E'\n', '');
        out := out || coalesce((SELECT string_agg(format('    n%s --> n%s', e->>0, e->>1), E'\n' ORDER BY (e->>0)::bigint, (e->>1)::bigint)
                  FROM jsonb_array_elements(edges) e) || E'\n', '');
        out := out || (SELECT string_agg(format('    classDef %s fill:%s,stroke:#555', key, value #>> '{}'), E'\n' ORDER BY key)
                  FROM jsonb_each(colours)) || E'\n';
        RETURN out;
    ELSIF format = 'dot' THEN
        out := 'digraph task {' || E'\n' || '    rankdir=TB;' || E'\n'
               || '    node [shape=box, style="rounded,filled", fontname="Helvetica"];' || E'\n';
        out := out || coalesce((SELECT string_agg(format('    n%s [label="%s\n%s", fillcolor="%s"];', n->>'id',
                       replace(n->>'name', '"', '\"'), n->>'state', colours->>(n->>'state')), E'\n' ORDER BY (n->>'id')::bigint)
                  FROM jsonb_array_elements(nodes) n) || E'\n', '');
        out := out || coalesce((SELECT string_agg(format('    n%s -> n%s;', e->>0, e->>1), E'\n' ORDER BY (e->>0)::bigint, (e->>1)::bigint)
                  FROM jsonb_array_elements(edges) e) || E'\n', '');
        RETURN out || '}' || E'\n';
    END IF;
    RAISE EXCEPTION 'unknown graph format "%"', format
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Use "mermaid" or "dot".';
END $$;

CREATE FUNCTION tasker.task_graph(task_id bigint, format text DEFAULT 'mermaid') RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM tasker._require(task_id, 'task_id');
    PERFORM tasker._require(format, 'format');
    IF NOT EXISTS (SELECT 1 FROM tasker.tasks t WHERE t.task_id = task_graph.task_id) THEN
        RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'undefined_object';
    END IF;
    RETURN tasker._graph(
        (SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.workflow_step_id, 'name', s.name,
                                                      'state', s.current_state)), '[]')
           FROM tasker.workflow_steps s WHERE s.task_id = task_graph.task_id),
        (SELECT coalesce(jsonb_agg(jsonb_build_array(e.from_step_id, e.to_step_id)), '[]')
           FROM tasker.workflow_step_edges e WHERE e.task_id = task_graph.task_id),
        format);
END $$;
COMMENT ON FUNCTION tasker.task_graph(bigint, text) IS
    'A task''s DAG as Mermaid (default) or Graphviz DOT, nodes coloured by state, edges parent -> child.';

CREATE FUNCTION tasker.template_graph(namespace text, name text, version text DEFAULT NULL,
                                      format text DEFAULT 'mermaid') RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id integer := tasker.find_template(namespace, name, version);
BEGIN
    PERFORM tasker._require(format, 'format');
    RETURN tasker._graph(
        (SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.position, 'name', s.name,
                                                      'state', 'template')), '[]')
           FROM tasker.named_steps s WHERE s.named_task_id = id),
        (SELECT coalesce(jsonb_agg(jsonb_build_array(p.position, c.position)), '[]')
           FROM tasker.named_step_edges e
           JOIN tasker.named_steps p ON p.named_step_id = e.from_named_step_id
           JOIN tasker.named_steps c ON c.named_step_id = e.to_named_step_id
          WHERE e.named_task_id = id),
        format);
END $$;
COMMENT ON FUNCTION tasker.template_graph(text, text, text, text) IS
    'A template''s DAG as Mermaid (default) or Graphviz DOT.';

CREATE VIEW tasker.active_tasks AS
SELECT t.task_id, n.name AS namespace, nt.name, nt.version, t.current_state, t.priority,
       t.initiator, t.created_at, t.updated_at,
       (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_id = t.task_id) AS steps,
       (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_id = t.task_id
           AND s.current_state IN ('complete', 'resolved_manually')) AS steps_done
  FROM tasker.tasks t
  JOIN tasker.named_tasks nt USING (named_task_id)
  JOIN tasker.namespaces n USING (namespace_id)
 WHERE t.current_state IN ('pending', 'in_progress');
COMMENT ON VIEW tasker.active_tasks IS 'Tasks that are pending or in progress.';

CREATE VIEW tasker.failed_steps AS
SELECT s.task_id, s.workflow_step_id, s.name AS step_name, nt.name AS task_name, s.current_state,
       s.attempts, s.max_attempts, s.last_failure_at, s.next_attempt_at,
       s.error->>'message' AS last_error, s.error->>'sqlstate' AS sqlstate, s.error
  FROM tasker.workflow_steps s
  JOIN tasker.tasks t USING (task_id)
  JOIN tasker.named_tasks nt USING (named_task_id)
 WHERE s.current_state IN ('error', 'waiting_for_retry');
COMMENT ON VIEW tasker.failed_steps IS 'Steps that failed for good (error) or are backing off before a retry, with their last error.';

CREATE VIEW tasker.queue_depths AS
SELECT coalesce(s.handler::text, s.queue) AS queue,
       s.handler IS NOT NULL AS in_database,
       count(*) FILTER (WHERE s.current_state IN ('pending', 'waiting_for_retry')
                          AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())) AS ready,
       count(*) FILTER (WHERE s.current_state = 'waiting_for_retry' AND s.next_attempt_at > now()) AS backing_off,
       count(*) FILTER (WHERE s.current_state = 'in_progress') AS in_progress
  FROM tasker.workflow_steps s
 WHERE s.pending_parents = 0 AND s.current_state IN ('pending', 'waiting_for_retry', 'in_progress')
 GROUP BY 1, 2;
COMMENT ON VIEW tasker.queue_depths IS 'Per queue (or SQL handler): steps ready, backing off and in progress.';
