-- Claiming and completing in one transaction (doc/workers.md): the claim is
-- invisible until the commit, a rollback leaves the steps ready with no
-- attempt counted, and a commit records the whole round (claim and
-- completion transitions, the task started and finalized).
SELECT tasker.register_template('{
  "namespace": "onetx", "name": "pair", "version": "1.0.0",
  "steps": [
    {"name": "a", "queue": "onetx"},
    {"name": "b", "queue": "onetx", "depends_on": ["a"]}
  ]}') IS NOT NULL AS registered;
SELECT tasker.create_task('onetx', 'pair') IS NOT NULL AS created;

CREATE TEMP VIEW onetx_steps AS
SELECT s.name, s.current_state, s.attempts, s.pending_parents, t.current_state AS task_state
  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_id)
 WHERE s.queue = 'onetx';

-- a claim rolled back: nothing happened
BEGIN;
SELECT step_name, attempt FROM tasker.claim_steps('onetx', 'w1', 10);
ROLLBACK;
SELECT * FROM onetx_steps ORDER BY name;

-- claim and complete in one transaction, twice: a, then its child b
BEGIN;
CREATE TEMP TABLE round1 AS SELECT step_id, attempt FROM tasker.claim_steps('onetx', 'w1', 10);
SELECT tasker.complete_steps(array_agg(step_id), array_agg(attempt)) AS completed FROM round1;
COMMIT;
SELECT * FROM onetx_steps ORDER BY name;
BEGIN;
CREATE TEMP TABLE round2 AS SELECT step_id, attempt FROM tasker.claim_steps('onetx', 'w1', 10);
SELECT tasker.complete_steps(array_agg(step_id), array_agg(attempt)) AS completed FROM round2;
COMMIT;
SELECT * FROM onetx_steps ORDER BY name;

-- the transition log has every move, claim and completion alike
SELECT s.name, tr.sort_key, tr.from_state, tr.to_state
  FROM tasker.workflow_step_transitions tr
  JOIN tasker.workflow_steps s USING (task_id, workflow_step_id)
 WHERE s.queue = 'onetx' ORDER BY s.name, tr.sort_key;
SELECT tr.sort_key, tr.from_state, tr.to_state
  FROM tasker.task_transitions tr
 WHERE tr.task_id = (SELECT DISTINCT task_id FROM tasker.workflow_steps WHERE queue = 'onetx')
 ORDER BY tr.sort_key;
SELECT count(*) AS invariant_violations FROM tasker.check_invariants();
