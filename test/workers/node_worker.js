// node_worker.js — an external tasker worker in Node.js with node-postgres (pg).
// Claims up to 10 steps at a time, does the work with a heartbeat, completes
// or fails each; when idle it waits on LISTEN tasker_ready_<queue> (with a
// slow poll as a fallback: a notification is a hint, not a delivery).
// Usage: node node_worker.js QUEUE [WORKER] [IDLE_EXIT_MS]; connection from PG*.
'use strict';
const { Client } = require('pg');

const [queue, worker = `node-${process.pid}`, idleExitMs = '0'] = process.argv.slice(2);
const LEASE = '30 seconds';

// The work itself.  It must be idempotent: a step whose lease expired is
// claimed again, so the same step can run twice.
async function work(step) {
  const { context, dependencies } = step.input;
  if (context.fail_first && step.attempt === 1) {
    throw new Error('first attempts fail');
  }
  return { message: `done by ${worker}`, step: step.step_name, parents: Object.keys(dependencies).sort() };
}

async function main() {
  if (!queue) throw new Error('usage: node node_worker.js QUEUE [WORKER] [IDLE_EXIT_MS]');
  const db = new Client();
  await db.connect();
  let notified = false;
  let wake = () => {};
  db.on('notification', () => { notified = true; wake(); });
  await db.query(`LISTEN ${db.escapeIdentifier(`tasker_ready_${queue}`)}`);

  let lastWork = Date.now();
  for (;;) {
    notified = false;
    const { rows } = await db.query(
      'SELECT step_id, attempt, step_name, input FROM tasker.claim_steps($1, $2, 10, $3)',
      [queue, worker, LEASE]);
    if (rows.length === 0) {
      if (Number(idleExitMs) > 0 && Date.now() - lastWork > Number(idleExitMs)) break;
      if (!notified) {
        await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 1000); });
        wake = () => {};
      }
      continue;
    }
    lastWork = Date.now();
    for (const step of rows) {
      // heartbeat: keep the lease while the work runs (NULL: the attempt is stale, give up)
      const beat = setInterval(() => {
        db.query('SELECT tasker.extend_lease($1, $2, $3)', [step.step_id, step.attempt, LEASE])
          .catch(() => {});
      }, 10000);
      try {
        const results = await work(step);
        await db.query('SELECT tasker.complete_step($1, $2, $3)', [step.step_id, step.attempt, results]);
      } catch (err) {
        await db.query('SELECT tasker.fail_step($1, $2, $3, retryable => $4, backoff_seconds => 0)',
          [step.step_id, step.attempt, { message: err.message }, !err.permanent]);
      } finally {
        clearInterval(beat);
      }
    }
  }
  await db.end();
}

main().catch((err) => { console.error(err); process.exit(1); });
