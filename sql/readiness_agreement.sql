--
-- readiness_agreement: the diagnostic path (step_readiness_status, which
-- recomputes readiness from edges and parent states) and the hot path
-- (claim_steps, which trusts pending_parents and its partial index) name
-- the same steps — on random DAGs of 1 to 200 steps driven through the real
-- API with random completions, failures (retryable now or later,
-- permanent), held claims, bypassed, resolved, retried, skipped and
-- cancelled steps.  After every round, for every task, the steps called
-- ready must be exactly the steps claim_steps claims (claimed in a
-- subtransaction that is rolled back).
--
-- Namespace: agr_test; each task has a template and a queue of its own.
--
\set SHOW_CONTEXT never
SET tasker.backoff_jitter = 0;

CREATE SCHEMA agr_test;

-- what was compared, what differed, and which situations came up
CREATE TABLE agr_test.tasks (label text PRIMARY KEY, task_id bigint, queue text, steps integer,
                             edges integer);
CREATE TABLE agr_test.comparisons (n integer NOT NULL DEFAULT 0, mismatched_steps integer NOT NULL DEFAULT 0);
INSERT INTO agr_test.comparisons VALUES (0, 0);
CREATE TABLE agr_test.mismatches (label text, round integer, step_name text, state text,
                                  called_ready boolean, claimed boolean, detail text);
CREATE TABLE agr_test.seen (situation text PRIMARY KEY, times integer NOT NULL);

-- build_task registers a random DAG template of n steps (1 to 200 when
-- not given) and creates its task.
CREATE FUNCTION agr_test.build_task(label text, size integer DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(size, 1 + floor(random() * 200)::integer);
    queue text := 'agr_' || label;
    steps jsonb := '[]';
    bypass text[] := '{}';
    parents jsonb;
    task bigint;
    k integer;
    i integer;
BEGIN
    FOR i IN 1 .. n LOOP
        k := floor(random() * (least(i - 1, 3) + 1))::integer;     -- 0 to 3 parents
        SELECT coalesce(jsonb_agg('s' || j), '[]') INTO parents
          FROM (SELECT j FROM generate_series(1, i - 1) j ORDER BY random() LIMIT k) p;
        steps := steps || jsonb_build_object(
            'name', 's' || i,
            'queue', queue,
            'depends_on', parents,
            'retryable', random() < 0.8,
            'max_attempts', 1 + floor(random() * 3)::integer,
            'skippable', random() < 0.15);
        IF random() < 0.05 THEN
            bypass := bypass || ('s' || i);
        END IF;
    END LOOP;
    PERFORM tasker.register_template(jsonb_build_object(
        'namespace', 'agr_test', 'name', label, 'version', '1.0.0', 'steps', steps));
    task := tasker.create_task('agr_test', label, bypass_steps => bypass);
    INSERT INTO agr_test.tasks
    SELECT label, task, queue, n,
           (SELECT count(*) FROM tasker.workflow_step_edges e WHERE e.task_id = task);
END $$;

-- note counts a situation.
CREATE FUNCTION agr_test.note(situation text, times integer) RETURNS void LANGUAGE sql AS $$
    INSERT INTO agr_test.seen VALUES (situation, times)
    ON CONFLICT (situation) DO UPDATE SET times = seen.times + excluded.times
$$;

-- compare checks one task: the ready steps against what claim_steps claims.
CREATE FUNCTION agr_test.compare(p_label text, p_round integer) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    t agr_test.tasks := (SELECT x FROM agr_test.tasks x WHERE x.label = p_label);
    ready bigint[];
    claimed bigint[];
    differing integer;
BEGIN
    SELECT coalesce(array_agg(r.workflow_step_id), '{}') INTO ready
      FROM tasker.step_readiness_status(t.task_id) r WHERE r.ready_for_execution;
    BEGIN
        SELECT coalesce(array_agg(c.step_id), '{}') INTO claimed
          FROM tasker.claim_steps(t.queue, 'probe', 10000) c;
        RAISE EXCEPTION USING ERRCODE = 'TKRB0', MESSAGE = 'roll back the probe';
    EXCEPTION WHEN SQLSTATE 'TKRB0' THEN
        NULL;
    END;

    INSERT INTO agr_test.mismatches
    SELECT p_label, p_round, r.name, r.current_state, r.workflow_step_id = ANY (ready),
           r.workflow_step_id = ANY (claimed),
           format('parents %s/%s, attempts %s/%s, retryable %s, pending_parents %s, due %s',
                  r.completed_parents, r.total_parents, r.attempts, r.retry_limit, s.retryable,
                  s.pending_parents, s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
      FROM tasker.step_readiness_status(t.task_id) r
      JOIN tasker.workflow_steps s ON s.task_id = r.task_id AND s.workflow_step_id = r.workflow_step_id
     WHERE (r.workflow_step_id = ANY (ready)) <> (r.workflow_step_id = ANY (claimed));
    GET DIAGNOSTICS differing = ROW_COUNT;
    UPDATE agr_test.comparisons SET n = n + 1, mismatched_steps = mismatched_steps + differing;

    -- which situations this comparison covered
    PERFORM agr_test.note(x.situation, x.times::integer)
       FROM (SELECT situation, count(*) AS times
               FROM (SELECT CASE
                          WHEN r.ready_for_execution AND r.current_state = 'waiting_for_retry'
                              THEN 'ready: a retry whose delay has passed'
                          WHEN r.ready_for_execution AND r.attempts > 0
                              THEN 'ready: pending again after retry_step'
                          WHEN r.ready_for_execution THEN 'ready: a first attempt'
                          WHEN r.current_state = 'waiting_for_retry' AND r.retry_eligible
                              THEN 'not ready: waiting out a retry delay'
                          WHEN r.current_state = 'pending' AND NOT r.dependencies_satisfied
                              THEN 'not ready: a parent is not done'
                          WHEN r.current_state = 'in_progress' THEN 'not ready: in progress'
                          WHEN r.current_state = 'error' AND r.attempts >= r.retry_limit
                              THEN 'not ready: attempts exhausted'
                          WHEN r.current_state = 'error' THEN 'not ready: failed for good'
                          ELSE 'not ready: ' || r.current_state
                      END AS situation
                       FROM tasker.step_readiness_status(t.task_id) r
                     UNION ALL
                     SELECT 'ready: a parent ' || CASE
                                WHEN p.current_state = 'error' THEN 'skipped'
                                WHEN p.current_state = 'resolved_manually' AND pt.metadata ? 'bypassed'
                                    THEN 'bypassed'
                                WHEN p.current_state = 'resolved_manually' THEN 'resolved_manually'
                                WHEN p.current_state <> 'complete' THEN 'skipped, then retried'
                                ELSE 'complete' END
                       FROM tasker.step_readiness_status(t.task_id) r
                       JOIN tasker.workflow_step_edges e
                         ON e.task_id = r.task_id AND e.to_step_id = r.workflow_step_id
                       JOIN tasker.workflow_steps p
                         ON p.task_id = e.task_id AND p.workflow_step_id = e.from_step_id
                       LEFT JOIN tasker.workflow_step_transitions pt
                         ON pt.task_id = p.task_id AND pt.workflow_step_id = p.workflow_step_id
                        AND pt.sort_key = 1
                      WHERE r.ready_for_execution) s
              GROUP BY situation) x;
    RETURN differing;
END $$;

-- report reports a claimed attempt: complete, fail now-due, fail later,
-- fail for good, or hold it.
CREATE FUNCTION agr_test.report(step_id bigint, attempt integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    dice double precision := random();
BEGIN
    IF dice < 0.55 THEN
        PERFORM tasker.complete_step(step_id, attempt, '{}');
    ELSIF dice < 0.65 THEN
        PERFORM tasker.fail_step(step_id, attempt, '{}', backoff_seconds => 0);
    ELSIF dice < 0.75 THEN
        PERFORM tasker.fail_step(step_id, attempt, '{}');
    ELSIF dice < 0.82 THEN
        PERFORM tasker.fail_step(step_id, attempt, '{}', retryable => false);
    END IF;                                                     -- else: hold
END $$;

-- open: operators may still move the task's steps.
CREATE FUNCTION agr_test.open(task bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT current_state NOT IN ('complete', 'cancelled', 'resolved_manually')
      FROM tasker.tasks WHERE task_id = task
$$;

-- act is one round of work on a task: finish some held attempts, claim
-- and report some ready steps, sometimes an operator's move.
CREATE FUNCTION agr_test.act(p_label text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t agr_test.tasks := (SELECT x FROM agr_test.tasks x WHERE x.label = p_label);
    s record;
    c record;
    k integer := floor(random() * 6)::integer;
    victim bigint;
BEGIN
    FOR s IN SELECT workflow_step_id, attempts FROM tasker.workflow_steps
              WHERE task_id = t.task_id AND current_state = 'in_progress'
              ORDER BY workflow_step_id LOOP
        IF random() < 0.5 THEN
            PERFORM agr_test.report(s.workflow_step_id, s.attempts);
        END IF;
    END LOOP;
    IF k > 0 THEN
        FOR c IN SELECT * FROM tasker.claim_steps(t.queue, 'worker', k) ORDER BY step_id LOOP
            PERFORM agr_test.report(c.step_id, c.attempt);
        END LOOP;
    END IF;
    IF NOT agr_test.open(t.task_id) THEN
        RETURN;
    END IF;
    IF random() < 0.15 THEN
        SELECT workflow_step_id INTO victim FROM tasker.workflow_steps
         WHERE task_id = t.task_id
           AND current_state IN ('pending', 'in_progress', 'waiting_for_retry', 'error')
         ORDER BY random() LIMIT 1;
        IF victim IS NOT NULL THEN
            PERFORM tasker.resolve_step(victim, '{}', 'agreement test');
        END IF;
    END IF;
    IF random() < 0.25 AND agr_test.open(t.task_id) THEN
        SELECT workflow_step_id INTO victim FROM tasker.workflow_steps
         WHERE task_id = t.task_id AND current_state = 'error'
         ORDER BY random() LIMIT 1;
        IF victim IS NOT NULL THEN
            PERFORM tasker.retry_step(victim);
        END IF;
    END IF;
    IF random() < 0.01 AND agr_test.open(t.task_id) THEN
        PERFORM tasker.cancel_task(t.task_id, 'agreement test');
    END IF;
END $$;

-- 30 random tasks (seeded), then 25 rounds of work, comparing every task
-- before the first round and after each.
SELECT setseed(0.3105);
DO $$
BEGIN
    FOR g IN 1 .. 30 LOOP
        PERFORM agr_test.build_task('dag' || lpad(g::text, 2, '0'),
                                    CASE g WHEN 1 THEN 1 WHEN 2 THEN 200 END);
    END LOOP;
END $$;
SELECT count(*) AS tasks, min(steps) AS min_steps, max(steps) AS max_steps, sum(steps) AS steps,
       sum(edges) AS edges, count(*) FILTER (WHERE steps = 1) AS single_step
  FROM agr_test.tasks;

DO $$
DECLARE
    label text;
    round integer;
BEGIN
    FOR label IN SELECT x.label FROM agr_test.tasks x ORDER BY x.label LOOP
        PERFORM agr_test.compare(label, 0);
    END LOOP;
    FOR round IN 1 .. 25 LOOP
        FOR label IN SELECT x.label FROM agr_test.tasks x ORDER BY x.label LOOP
            PERFORM agr_test.act(label);
            PERFORM agr_test.compare(label, round);
        END LOOP;
    END LOOP;
END $$;

-- Every comparison agreed.
SELECT n AS comparisons, mismatched_steps FROM agr_test.comparisons;
SELECT * FROM agr_test.mismatches ORDER BY label, round, step_name LIMIT 20;

-- The runs went through every situation the rules distinguish.
SELECT situation, times > 0 AS seen FROM agr_test.seen ORDER BY situation;
SELECT count(*) FILTER (WHERE k.current_state = 'complete') > 0 AS some_complete,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM tasker.task_transitions tr
                                      WHERE tr.task_id = k.task_id AND tr.to_state = 'error')) > 0
           AS some_were_in_error,
       count(*) FILTER (WHERE k.current_state IN ('pending', 'in_progress')) > 0 AS some_unfinished
  FROM tasker.tasks k WHERE k.task_id IN (SELECT task_id FROM agr_test.tasks);

-- The comparison can fail: make the hot path's count of unfinished parents
-- wrong, one way and then the other, and compare() reports the step.
-- (Each is rolled back.)
CREATE FUNCTION agr_test.corrupt(wrong_count integer) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    victim record;
    result text;
BEGIN
    SELECT s.task_id, s.workflow_step_id, x.label INTO victim
      FROM tasker.workflow_steps s JOIN agr_test.tasks x USING (task_id)
     WHERE s.current_state = 'pending' AND s.attempts = 0
       AND (s.pending_parents = 0) = (wrong_count > 0)
     ORDER BY s.workflow_step_id LIMIT 1;
    BEGIN
        UPDATE tasker.workflow_steps SET pending_parents = wrong_count
         WHERE task_id = victim.task_id AND workflow_step_id = victim.workflow_step_id;
        PERFORM agr_test.compare(victim.label, -1);
        SELECT string_agg(format('%s: called ready %s, claimed %s', state, called_ready, claimed), '; ')
          INTO result FROM agr_test.mismatches WHERE round = -1;
        RAISE EXCEPTION USING ERRCODE = 'TKRB0', MESSAGE = 'undo';
    EXCEPTION WHEN SQLSTATE 'TKRB0' THEN
        RETURN result;
    END;
END $$;
SELECT agr_test.corrupt(1) AS ready_step_counted_blocked;
SELECT agr_test.corrupt(0) AS blocked_step_counted_ready;
SELECT count(*) AS mismatches_left FROM agr_test.mismatches;
