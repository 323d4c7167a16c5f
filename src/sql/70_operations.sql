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
    PERFORM tasker._authorize_task(task_id, 'task_id');
    PERFORM tasker._require(task_id, 'task_id');
    PERFORM tasker._require(format, 'format');
    IF NOT EXISTS (SELECT 1 FROM tasker.tasks t WHERE t.task_id = task_graph.task_id) THEN
        RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'undefined_object';
    END IF;
    -- nodes are numbered by the step's position in the template, so a
    -- task's picture and its template's share their node names
    RETURN tasker._graph(
        (SELECT coalesce(jsonb_agg(jsonb_build_object('id', ns.position, 'name', s.name,
                                                      'state', s.current_state)), '[]')
           FROM tasker.workflow_steps s
           JOIN tasker.named_steps ns ON ns.named_step_id = s.named_step_id
          WHERE s.task_id = task_graph.task_id),
        (SELECT coalesce(jsonb_agg(jsonb_build_array(p.position, c.position)), '[]')
           FROM tasker.workflow_step_edges e
           JOIN tasker.workflow_steps ps ON ps.task_id = e.task_id AND ps.workflow_step_id = e.from_step_id
           JOIN tasker.named_steps p ON p.named_step_id = ps.named_step_id
           JOIN tasker.workflow_steps cs ON cs.task_id = e.task_id AND cs.workflow_step_id = e.to_step_id
           JOIN tasker.named_steps c ON c.named_step_id = cs.named_step_id
          WHERE e.task_id = task_graph.task_id),
        format);
END $$;
COMMENT ON FUNCTION tasker.task_graph(bigint, text) IS
    'A task''s DAG as Mermaid (default) or Graphviz DOT, nodes coloured by state, edges parent -> child.';

CREATE FUNCTION tasker.template_graph(namespace text, name text, version text DEFAULT NULL,
                                      format text DEFAULT 'mermaid') RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id integer;
BEGIN
    PERFORM tasker._authorize('submitter', namespace, 'namespace');
    id := tasker.find_template(namespace, name, version);
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

CREATE VIEW tasker.stuck_steps AS
SELECT s.task_id, s.workflow_step_id, s.name AS step_name, s.current_state,
       CASE WHEN s.current_state = 'in_progress' THEN 'lease expired'
            ELSE 'ready but not claimed' END AS reason,
       CASE WHEN s.current_state = 'in_progress' THEN s.lease_expires_at
            ELSE greatest(s.updated_at, s.next_attempt_at) END AS since,
       s.claimed_by, s.attempts, coalesce(s.handler::text, 'queue ' || s.queue) AS runs_on
  FROM tasker.workflow_steps s
 WHERE (s.current_state = 'in_progress' AND s.lease_expires_at < now())
    OR (s.current_state IN ('pending', 'waiting_for_retry') AND s.pending_parents = 0
        AND greatest(s.updated_at, s.next_attempt_at)
            < now() - pg_catalog.current_setting('tasker.stuck_step_threshold')::interval);
COMMENT ON VIEW tasker.stuck_steps IS
    'Steps in progress past their lease, and ready steps no one has claimed for longer than tasker.stuck_step_threshold.';

-- _when says when a moment is, in UTC and relative to now.
CREATE FUNCTION tasker._when(t timestamptz) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN t IS NULL THEN 'never'
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                     || CASE WHEN t >= now() THEN format(' (in %s s)', ceil(extract(epoch FROM t - now())))
                             ELSE format(' (%s s ago)', floor(extract(epoch FROM now() - t))) END
           END
$$;

CREATE FUNCTION tasker.explain_task(task_id bigint) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t record;
    s record;
    lines text[] := '{}';
    total integer;
    done integer;
    parents text;
BEGIN
    PERFORM tasker._authorize_task(task_id, 'task_id');
    PERFORM tasker._require(task_id, 'task_id');
    SELECT tk.task_id, tk.current_state, n.name AS namespace, nt.name, nt.version, tk.created_at,
           tk.completed_at
      INTO t
      FROM tasker.tasks tk
      JOIN tasker.named_tasks nt USING (named_task_id)
      JOIN tasker.namespaces n USING (namespace_id)
     WHERE tk.task_id = explain_task.task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', task_id USING ERRCODE = 'undefined_object';
    END IF;
    SELECT count(*), count(*) FILTER (WHERE current_state IN ('complete', 'resolved_manually')
                                       OR (current_state = 'error' AND skippable))
      INTO total, done FROM tasker.workflow_steps ws WHERE ws.task_id = t.task_id;
    lines := lines || format('task %s (%s.%s %s) is %s: %s of %s steps done.',
                             t.task_id, t.namespace, t.name, t.version, t.current_state, done, total);

    FOR s IN
        SELECT ws.*,
               (SELECT string_agg(format('%s (%s)', p.name, p.current_state), ', ' ORDER BY p.workflow_step_id)
                  FROM tasker.workflow_step_edges e
                  JOIN tasker.workflow_steps p ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
                 WHERE e.task_id = ws.task_id AND e.to_step_id = ws.workflow_step_id
                   AND NOT (p.current_state IN ('complete', 'resolved_manually')
                            OR (p.current_state = 'error' AND p.skippable))) AS waiting_on,
               (SELECT string_agg(c.name, ', ' ORDER BY c.workflow_step_id)
                  FROM tasker.workflow_step_edges e
                  JOIN tasker.workflow_steps c ON c.task_id = e.task_id AND c.workflow_step_id = e.to_step_id
                 WHERE e.task_id = ws.task_id AND e.from_step_id = ws.workflow_step_id) AS children
          FROM tasker.workflow_steps ws
         WHERE ws.task_id = t.task_id
         ORDER BY ws.workflow_step_id
    LOOP
        lines := lines || ('- ' || s.name || ': ' || CASE
            WHEN s.current_state = 'complete' THEN
                format('complete after %s attempt%s.', s.attempts, CASE WHEN s.attempts = 1 THEN '' ELSE 's' END)
            WHEN s.current_state = 'resolved_manually' THEN 'resolved by hand.'
            WHEN s.current_state = 'cancelled' THEN 'cancelled.'
            WHEN s.current_state = 'in_progress' THEN
                format('running attempt %s of %s (claimed by %s, lease ends %s).', s.attempts,
                       s.max_attempts, coalesce(s.claimed_by, '?'), tasker._when(s.lease_expires_at))
            WHEN s.current_state = 'error' THEN
                format('failed for good after %s attempt%s: %s%s%s', s.attempts,
                       CASE WHEN s.attempts = 1 THEN '' ELSE 's' END,
                       coalesce(s.error->>'message', s.error::text, 'no error recorded'),
                       CASE WHEN s.error ? 'sqlstate' THEN ' (SQLSTATE ' || (s.error->>'sqlstate') || ')' ELSE '' END,
                       CASE WHEN s.skippable THEN '; skippable, so its children go on.'
                            WHEN s.children IS NOT NULL THEN '; blocks ' || s.children || '.'
                            ELSE '.' END)
            WHEN s.waiting_on IS NOT NULL THEN 'waits on ' || s.waiting_on || '.'
            WHEN s.current_state = 'waiting_for_retry' AND s.next_attempt_at > now() THEN
                format('attempt %s of %s failed (%s); retries %s.', s.attempts, s.max_attempts,
                       coalesce(s.error->>'message', 'no message'), tasker._when(s.next_attempt_at))
            WHEN s.current_state = 'waiting_for_retry' THEN
                format('attempt %s of %s failed (%s); ready to retry now.', s.attempts, s.max_attempts,
                       coalesce(s.error->>'message', 'no message'))
            ELSE format('ready to run (%s).', coalesce('handler ' || s.handler::text, 'queue ' || s.queue))
        END);
    END LOOP;
    RETURN array_to_string(lines, E'\n');
END $$;
COMMENT ON FUNCTION tasker.explain_task(bigint) IS
    'A plain-text account of why a task is where it is: which steps are ready, which wait on which parents, which back off until when, which failed and why.';
