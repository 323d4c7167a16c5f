// bench.mjs — tasker side by side with graphile-worker, pg-boss, DBOS, PgQ and
// the bare FOR UPDATE SKIP LOCKED floor, on one throwaway PostgreSQL.
//
// run.sh copies this file into the peers folder (outside the repository, where
// npm installed pg, graphile-worker, pg-boss and @dbos-inc/dbos-sdk) and runs
//   node bench.mjs setup                      once: databases, templates, tables
//   node bench.mjs all                        every workload, then the table
// Every single measurement runs in a child process of its own
// (`node bench.mjs one SYSTEM WORKLOAD ARG`), which prints one JSON line: no
// library's timers, pools or caches outlive its measurement.
//
// Settings come from the environment (run.sh sets them): BENCH_HOST and
// BENCH_PORT (the server), BENCH_WORKERS (8), BENCH_JOBS (20000), BENCH_DAGS
// (1000), BENCH_LAT_TRIALS (200), BENCH_CHAIN_TRIALS (20), BENCH_GROWTH_ROWS
// (1000000), BENCH_GROWTH_JOBS (2000), BENCH_REPEAT (3), BENCH_ONLY (a regular
// expression over "workload system" labels: run only those), BENCH_WORKFLOWS
// (the folder of the reference shapes), BENCH_OUT (where the raw results go);
// per system: BENCH_TASKER_BATCH (executor_batch_size for the in-database
// DAGs; unset: tasker's default), BENCH_GW_DAG_BATCH (10: graphile-worker's DAG
// runs with localQueue and batched completion; 1: without),
// BENCH_DBOS_POLL_MS (50) and BENCH_DBOS_CONCURRENCY (0 = no limit),
// BENCH_PGBENCH_SECONDS (10).
//
// Timing: a drain runs from the first job a handler sees (tasker in-database:
// the first claim's timestamp) to the moment the database shows every job
// done (tasker in-database: the last completion's timestamp); a DAG run from
// the first enqueue to the last completion; a latency trial from just before
// the enqueue call to the handler's first line (the same machine clock: Node's
// for the Node workers, clock_timestamp() inside tasker's SQL handler).
import { createRequire } from 'node:module';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const pg = require('pg');
const env = process.env;
const HOST = env.BENCH_HOST;
const PORT = Number(env.BENCH_PORT);
const W = Number(env.BENCH_WORKERS || 8);
const N = Number(env.BENCH_JOBS || 20000);
const DAGS = Number(env.BENCH_DAGS || 1000);
const LAT_TRIALS = Number(env.BENCH_LAT_TRIALS || 200);
const CHAIN_TRIALS = Number(env.BENCH_CHAIN_TRIALS || 20);
const GROWTH_ROWS = Number(env.BENCH_GROWTH_ROWS || 1000000);
const GROWTH_JOBS = Number(env.BENCH_GROWTH_JOBS || 2000);
const REPEAT = Number(env.BENCH_REPEAT || 3);
const ONLY = env.BENCH_ONLY ? new RegExp(env.BENCH_ONLY) : null;
const OUT = env.BENCH_OUT || '/tmp/tasker-peers/results.jsonl';
const SELF = fileURLToPath(import.meta.url);

const now = () => performance.timeOrigin + performance.now();   // wall clock, sub-ms
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const range = (n) => Array.from({ length: n }, (_, i) => i);
const url = (db) => `postgresql://postgres@localhost/${db}?host=${encodeURIComponent(HOST)}&port=${PORT}`;
const quiet = { info() {}, warn() {}, error() {}, debug() {}, log() {} };

async function client(db) {
  const c = new pg.Client({ host: HOST, port: PORT, user: 'postgres', database: db });
  await c.connect();
  c.on('error', () => {});
  return c;
}
async function sql(db, text, params) {
  const c = await client(db);
  try { return (await c.query(text, params)).rows; } finally { await c.end(); }
}
async function clients(db, n) { return Promise.all(range(n).map(() => client(db))); }
async function closeAll(cs) { await Promise.all(cs.map((c) => c.end().catch(() => {}))); }
// fresh statistics, no dirty buffers left from the setup: before every measurement
async function settle(db) { await sql(db, 'VACUUM ANALYZE'); await sql(db, 'CHECKPOINT'); }
async function waitFor(fn, everyMs = 5, limitMs = 300000) {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return;
    if (Date.now() - t0 > limitMs) throw new Error('timed out waiting');
    await sleep(everyMs);
  }
}
// run fn(i) for i < n on n concurrent loops, each taking its share of total items in steps of b
async function shares(n, total, b, fn) {
  await Promise.all(range(n).map(async (i) => {
    const mine = Math.floor(total / n) + (i < total % n ? 1 : 0);
    for (let k = 0; k < mine; k += b) await fn(i, Math.min(b, mine - k));
  }));
}
function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * p, lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
const median = (xs) => percentile(xs, 0.5);

// ---------------------------------------------------------------- DAG shapes
// diamond4 (a -> b, c -> d) and the reference shapes: [{name, steps: [{name, depends_on}]}]
function shapes() {
  const dir = env.BENCH_WORKFLOWS;
  const ref = readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
    .map((f) => JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')))
    .map((t) => ({ name: t.name, steps: t.steps.map((s) => ({ name: s.name, depends_on: s.depends_on || [] })) }));
  const diamond4 = { name: 'diamond4', steps: [
    { name: 'a', depends_on: [] }, { name: 'b', depends_on: ['a'] },
    { name: 'c', depends_on: ['a'] }, { name: 'd', depends_on: ['b', 'c'] }] };
  const chain5 = { name: 'chain5', steps: range(5).map((i) => ({ name: `s${i + 1}`, depends_on: i ? [`s${i}`] : [] })) };
  return { diamond4, chain5, ref };
}
// the two DAG workloads: name -> list of shapes, each run DAGS times
function dagSets() {
  const { diamond4, ref } = shapes();
  return { diamond4: [diamond4], reference: ref };
}
const children = (shape, step) => shape.steps.filter((s) => s.depends_on.includes(step)).map((s) => s.name);

// ---------------------------------------------------------------- setup
async function setup() {
  const dbs = ['bench_tasker', 'bench_floor', 'bench_gw', 'bench_boss', 'bench_dbos', 'bench_pgq'];
  for (const db of dbs) {
    const have = await sql('postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [db]);
    if (have.length === 0) await sql('postgres', `CREATE DATABASE ${db}`);
  }
  const { diamond4, chain5, ref } = shapes();
  const t = await client('bench_tasker');
  await t.query('CREATE EXTENSION IF NOT EXISTS tasker');
  await t.query(`CREATE OR REPLACE FUNCTION public.noop(input jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb'`);
  await t.query(`CREATE TABLE IF NOT EXISTS public.lat_log (task_id bigint, step_name text, ts timestamptz)`);
  await t.query(`CREATE OR REPLACE FUNCTION public.lat(input jsonb) RETURNS jsonb LANGUAGE sql AS $$
      INSERT INTO public.lat_log VALUES ((input->>'task_id')::bigint, input->>'step_name', clock_timestamp());
      SELECT '{}'::jsonb $$`);
  const reg = async (ns, shape, extra) => t.query('SELECT tasker.register_template($1)', [JSON.stringify({
    namespace: ns, name: shape.name, version: '1.0.0',
    steps: shape.steps.map((s) => ({ name: s.name, depends_on: s.depends_on, ...extra })) })]);
  const one = { name: 'one', steps: [{ name: 's', depends_on: [] }] };
  await reg('w1ext', one, { queue: 'w1' });
  await reg('w1sql', one, { handler: 'public.noop(jsonb)' });
  await reg('latext', one, { queue: 'lat' });
  await reg('latsql', one, { handler: 'public.lat(jsonb)' });
  await reg('latext', chain5, { queue: 'lat' });
  await reg('latsql', chain5, { handler: 'public.lat(jsonb)' });
  await reg('w4', one, { queue: 'w4' });
  for (const s of [diamond4, ...ref]) {
    await reg('dagext', s, { queue: 'dag' });
    await reg('dagsql', s, { handler: 'public.noop(jsonb)' });
  }
  await t.end();
  await sql('bench_floor', 'CREATE TABLE IF NOT EXISTS floor_jobs (id bigserial PRIMARY KEY, payload jsonb NOT NULL)');
  await sql('bench_pgq', 'CREATE EXTENSION IF NOT EXISTS pgq');
  await sql('bench_gw', 'CREATE TABLE IF NOT EXISTS dag_pending (wf int, step text, remaining int, PRIMARY KEY (wf, step))');
  const gw = require('graphile-worker');
  const utils = await gw.makeWorkerUtils({ connectionString: url('bench_gw'), logger: new gw.Logger(() => () => {}) });
  await utils.migrate();
  await utils.release();
  const { PgBoss } = await import('pg-boss');
  const boss = new PgBoss({ connectionString: url('bench_boss'), supervise: false, schedule: false });
  boss.on('error', (e) => console.error('pg-boss:', e.message));
  await boss.start();
  for (const q of ['w1', 'dag', 'lat', 'w4']) {
    if (!(await boss.getQueue(q))) await boss.createQueue(q, { notify: true });
  }
  await boss.stop({ graceful: false });
  await child('dbosInit');
}
// DBOS's system tables and the queue (in a process of its own: DBOS launches once per process)
async function dbosInit() {
  const DBOS = await dbosLaunch(async () => {});
  await DBOS.shutdown();
  return 0;
}

// ---------------------------------------------------------------- tasker
async function taskerSet(settings) {
  const c = await client('bench_tasker');
  // (null: back to tasker's default)
  for (const [k, v] of Object.entries(settings)) {
    await c.query(v === null ? `ALTER SYSTEM RESET tasker.${k}` : `ALTER SYSTEM SET tasker.${k} = '${v}'`);
  }
  await c.query('SELECT pg_reload_conf()');
  await c.end();
  await sleep(300);
}
async function taskerReset() {
  await sql('bench_tasker', 'DELETE FROM tasker.tasks');
  await sql('bench_tasker', 'TRUNCATE public.lat_log');
  await settle('bench_tasker');
}
const taskerUnfinished = async (c) => Number((await c.query(
  "SELECT count(*) AS n FROM tasker.tasks WHERE current_state IN ('pending', 'in_progress')")).rows[0].n);

async function taskerEnqueue(ns, b) {
  await taskerReset();
  const cs = await clients('bench_tasker', W);
  const t0 = now();
  await shares(W, N, b, (i, k) => cs[i].query(k === 1 ? "SELECT tasker.create_task($1, 'one')"
    : "SELECT tasker.create_tasks($1, 'one', array_fill('{}'::jsonb, ARRAY[$2::integer]))", k === 1 ? [ns] : [ns, k]));
  const t = now() - t0;
  await closeAll(cs);
  return N / t * 1000;
}
// external workers: W connections loop claim_steps(b) + complete_step / complete_steps
// until `total` steps are done; with listen, an empty claim waits for NOTIFY (1 s poll).
function taskerWorkers(cs, queue, b, total, opts = {}) {
  const st = { done: 0, t0: null, t1: null, claimMs: [], onStep: opts.onStep };
  const wakers = [];
  const run = Promise.all(cs.map(async (c, i) => {
    let wake = null, notified = false;
    if (opts.listen) {
      c.on('notification', () => { notified = true; if (wake) wake(); });
      await c.query(`LISTEN tasker_ready_${queue}`);
    }
    wakers.push(() => { notified = true; if (wake) wake(); });
    while (st.done < total) {
      notified = false;
      const tc = now();
      // oneTx: claim and complete in one transaction, as the floor deletes
      // what it claims (a crash rolls the claim back; no lease is relied on)
      if (opts.oneTx) await c.query('BEGIN');
      const { rows } = await c.query('SELECT step_id, attempt, task_id, step_name FROM tasker.claim_steps($1, $2, $3)', [queue, `w${i}`, b]);
      const t = now();
      if (rows.length === 0) {
        if (opts.oneTx) await c.query('COMMIT');
        if (st.done >= total) break;
        if (opts.listen) {
          if (!notified) await new Promise((r) => { wake = r; setTimeout(r, 1000); });
          wake = null;
        } else {
          await sleep(1);
        }
        continue;
      }
      st.claimMs.push(t - tc);
      if (st.t0 === null) st.t0 = t;
      if (st.onStep) for (const r of rows) st.onStep(r, t);
      if (rows.length === 1) {
        await c.query('SELECT tasker.complete_step($1, $2)', [rows[0].step_id, rows[0].attempt]);
      } else {
        await c.query('SELECT tasker.complete_steps($1::bigint[], $2::integer[])',
          [rows.map((r) => r.step_id), rows.map((r) => r.attempt)]);
      }
      if (opts.oneTx) await c.query('COMMIT');
      st.done += rows.length;
      if (st.done >= total && st.t1 === null) { st.t1 = now(); wakers.forEach((f) => f()); }
    }
  }));
  st.run = run;
  return st;
}
async function taskerExtDrain(b, mode) {
  await taskerEnqueue('w1ext', 10);
  await settle('bench_tasker');
  const cs = await clients('bench_tasker', W);
  const st = taskerWorkers(cs, 'w1', b, N, { oneTx: mode === 'onetx' });
  await st.run;
  await closeAll(cs);
  return N / (st.t1 - st.t0) * 1000;
}
// in-database: no-op SQL handlers run by the background workers; the rate from
// the steps' own timestamps (first claim to last completion)
async function taskerSqlDrain(b) {
  await taskerSet({ enabled: 'off' });
  await taskerEnqueue('w1sql', 10);
  await taskerSet({ max_executors: W, min_concurrent_steps: W, max_concurrent_steps: W, executor_batch_size: b });
  await settle('bench_tasker');
  const c = await client('bench_tasker');
  await taskerSet({ enabled: 'on' });
  await waitFor(async () => (await taskerUnfinished(c)) === 0, 100);
  const r = (await c.query(`SELECT count(*) / extract(epoch FROM max(completed_at) - min(last_attempted_at)) AS rate
                              FROM tasker.workflow_steps`)).rows[0];
  await c.end();
  return Number(r.rate);
}
// DAG: create the tasks 100 per call (create_tasks) from one connection
// while the workers run; steps per second from the first call to the last
// task's completion
async function taskerDag(set, mode) {
  const shapesList = dagSets()[set];
  const total = DAGS * shapesList.reduce((a, s) => a + s.steps.length, 0);
  await taskerReset();
  if (mode === 'sql') await taskerSet({ enabled: 'on', max_executors: W, min_concurrent_steps: W, max_concurrent_steps: W, executor_batch_size: env.BENCH_TASKER_BATCH ? Number(env.BENCH_TASKER_BATCH) : null });
  const cs = mode === 'ext' ? await clients('bench_tasker', W) : [];
  const st = mode === 'ext' ? taskerWorkers(cs, 'dag', 10, total, { listen: true }) : null;
  await sleep(200);
  const c = await client('bench_tasker');
  const ns = mode === 'ext' ? 'dagext' : 'dagsql';
  const t0 = now();
  for (let k = 0; k < DAGS; k += 100) {
    for (const s of shapesList) {
      await c.query("SELECT tasker.create_tasks($1, $2, array_fill('{}'::jsonb, ARRAY[$3::integer]))", [ns, s.name, Math.min(100, DAGS - k)]);
    }
  }
  let t1;
  if (mode === 'ext') {
    await st.run;
    await closeAll(cs);
    t1 = st.t1;
  } else {
    await waitFor(async () => (await taskerUnfinished(c)) === 0, 20);
    t1 = Number((await c.query('SELECT extract(epoch FROM max(completed_at)) * 1000 AS t FROM tasker.tasks')).rows[0].t);
  }
  const left = await taskerUnfinished(c);
  await c.end();
  if (left) throw new Error(`${left} tasks unfinished`);
  return total / (t1 - t0) * 1000;
}
// latency: one job into an idle system, enqueue to handler start; returns the trials (ms)
async function taskerLatency(mode, shape) {
  await taskerReset();
  const steps = shape === 'chain5' ? 5 : 1;
  const trials = shape === 'chain5' ? CHAIN_TRIALS : LAT_TRIALS;
  const starts = new Map();   // task_id -> [t of step 1..n]
  let cs = [], st = null;
  if (mode === 'sql') {
    await taskerSet({ enabled: 'on', max_executors: W, min_concurrent_steps: W, max_concurrent_steps: W, executor_batch_size: null });
  } else {
    cs = await clients('bench_tasker', W);
    st = taskerWorkers(cs, 'lat', 1, trials * steps, { listen: true, onStep: (r, t) => {
      const k = String(r.task_id);
      if (!starts.has(k)) starts.set(k, []);
      starts.get(k)[Number(r.step_name.replace(/\D/g, '') || 1) - 1] = t;
    } });
  }
  const c = await client('bench_tasker');
  const ns = mode === 'ext' ? 'latext' : 'latsql';
  const out = [];
  await sleep(500);
  for (let i = 0; i < trials; i++) {
    const t0 = now();
    const id = String((await c.query('SELECT tasker.create_task($1, $2) AS id', [ns, shape])).rows[0].id);
    let ts;
    if (mode === 'sql') {
      await waitFor(async () => Number((await c.query('SELECT count(*) AS n FROM public.lat_log WHERE task_id = $1', [id])).rows[0].n) === steps, 2);
      ts = (await c.query('SELECT extract(epoch FROM ts) * 1000 AS t FROM public.lat_log WHERE task_id = $1 ORDER BY ts', [id])).rows.map((r) => Number(r.t));
    } else {
      await waitFor(() => (starts.get(id) || []).filter((x) => x).length === steps, 1);
      ts = starts.get(id);
    }
    out.push(steps === 1 ? ts[0] - t0 : (ts[4] - ts[0]) / 4);
    await waitFor(async () => (await taskerUnfinished(c)) === 0, 2);
    await sleep(20 + Math.random() * 30);
  }
  await c.end();
  if (st) { await st.run; await closeAll(cs); }
  return out;
}
// growth: median time of one claim_steps(max 1) call (then complete_step) over
// GROWTH_JOBS ready steps, one worker
async function taskerGrowth() {
  await sql('bench_tasker', "DELETE FROM tasker.tasks WHERE current_state <> 'complete' OR named_task_id = tasker.find_template('w4', 'one')");
  const c = await client('bench_tasker');
  await c.query("SELECT count(tasker.create_task('w4', 'one')) FROM generate_series(1, $1)", [GROWTH_JOBS]);
  await settle('bench_tasker');
  const st = taskerWorkers([c], 'w4', 1, GROWTH_JOBS);
  await st.run;
  await c.end();
  return median(st.claimMs);
}
// 1,000,000 finished steps in queue w4 (100,000 complete tasks of 10 steps), written in bulk
async function taskerFill() {
  const have = Number((await sql('bench_tasker', "SELECT count(*) AS n FROM tasker.workflow_steps WHERE queue = 'w4' AND current_state = 'complete'"))[0].n);
  if (have >= GROWTH_ROWS) return;
  const c = await client('bench_tasker');
  const filler = readFileSync(`${env.BENCH_HERE}/tasker_filler.sql`, 'utf8');
  await c.query(`SET bench.rows = '${GROWTH_ROWS}'`);
  await c.query(filler);
  await c.end();
}

// ---------------------------------------------------------------- floor
async function floorEnqueue(b) {
  await sql('bench_floor', 'TRUNCATE floor_jobs');
  await settle('bench_floor');
  const cs = await clients('bench_floor', W);
  const t0 = now();
  await shares(W, N, b, (i, k) => cs[i].query(k === 1 ? "INSERT INTO floor_jobs (payload) VALUES ('{}')"
    : "INSERT INTO floor_jobs (payload) SELECT '{}' FROM generate_series(1, $1)", k === 1 ? [] : [k]));
  const t = now() - t0;
  await closeAll(cs);
  return N / t * 1000;
}
async function floorDrain(b) {
  await floorEnqueue(10);
  await settle('bench_floor');
  const cs = await clients('bench_floor', W);
  let done = 0, t0 = null, t1 = null;
  await Promise.all(cs.map(async (c) => {
    for (;;) {
      // claim b and delete them, one commit
      const { rows } = await c.query(`DELETE FROM floor_jobs WHERE id IN
          (SELECT id FROM floor_jobs ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1) RETURNING id, payload`, [b]);
      if (rows.length === 0) break;
      if (t0 === null) t0 = now();
      done += rows.length;
      if (done >= N) t1 = now();
    }
  }));
  await closeAll(cs);
  if (done !== N) throw new Error(`floor drained ${done}`);
  return N / (t1 - t0) * 1000;
}
function pgbenchTps() {
  const r = spawnSync('pgbench', ['-n', '-N', '-c', String(W), '-j', String(W), '-T', String(env.BENCH_PGBENCH_SECONDS || 10),
    '-h', HOST, '-p', String(PORT), '-U', 'postgres', 'bench_pgbench'], { encoding: 'utf8' });
  const m = /tps = ([0-9.]+)/.exec(r.stdout);
  if (!m) throw new Error(`pgbench: ${r.stderr}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------- PgQ
// W queues with one consumer each (PgQ gives every consumer of a queue every
// event; parallel work means a queue per worker). Events go in 1 or 10 per
// transaction; after the enqueue one ticker call closes a batch per queue;
// each worker then takes its batch (next_batch, get_batch_events, finish_batch
// in one transaction) until next_batch has nothing.
async function pgqReset() {
  const c = await client('bench_pgq');
  for (let i = 0; i < W; i++) {
    await c.query('SELECT pgq.drop_queue($1, true) FROM pgq.queue WHERE queue_name = $1', [`q${i}`]);
    await c.query('SELECT pgq.create_queue($1)', [`q${i}`]);
    await c.query("SELECT pgq.register_consumer($1, 'c')", [`q${i}`]);
    // the one ticker call after the enqueue closes a batch whatever its size
    await c.query("SELECT pgq.set_queue_config($1, 'ticker_max_count', '1')", [`q${i}`]);
  }
  await c.end();
  await settle('bench_pgq');
}
async function pgqEnqueue(b) {
  await pgqReset();
  const cs = await clients('bench_pgq', W);
  const t0 = now();
  await shares(W, N, b, (i, k) => cs[i].query(k === 1 ? "SELECT pgq.insert_event($1, 'job', '{}')"
    : "SELECT pgq.insert_event($1, 'job', '{}') FROM generate_series(1, $2)", k === 1 ? [`q${i}`] : [`q${i}`, k]));
  const t = now() - t0;
  await closeAll(cs);
  return N / t * 1000;
}
async function pgqDrain() {
  await pgqEnqueue(10);
  await sql('bench_pgq', 'SELECT pgq.ticker()');
  await settle('bench_pgq');
  const cs = await clients('bench_pgq', W);
  let done = 0, t0 = null, t1 = null;
  await Promise.all(cs.map(async (c, i) => {
    for (;;) {
      await c.query('BEGIN');
      const { rows: [{ id }] } = await c.query("SELECT pgq.next_batch($1, 'c') AS id", [`q${i}`]);
      if (id === null) { await c.query('COMMIT'); break; }
      if (t0 === null) t0 = now();
      const { rows } = await c.query('SELECT ev_id, ev_data FROM pgq.get_batch_events($1)', [id]);
      await c.query('SELECT pgq.finish_batch($1)', [id]);
      await c.query('COMMIT');
      done += rows.length;
      if (done >= N) t1 = now();
    }
  }));
  await closeAll(cs);
  if (done !== N) throw new Error(`pgq drained ${done}`);
  return N / (t1 - t0) * 1000;
}

// ---------------------------------------------------------------- graphile-worker
function gwPool(max) {
  const pool = new pg.Pool({ connectionString: url('bench_gw'), max });
  pool.on('error', (e) => console.error('graphile-worker pool:', e.message));
  pool.on('connect', (c) => c.on('error', (e) => console.error('graphile-worker client:', e.message)));
  return pool;
}
const gwLogger = () => { const gw = require('graphile-worker'); return new gw.Logger(() => () => {}); };
async function gwReset() {
  await sql('bench_gw', 'DELETE FROM graphile_worker._private_jobs');
  await sql('bench_gw', 'TRUNCATE dag_pending');
  await settle('bench_gw');
}
async function gwEnqueue(b) {
  const gw = require('graphile-worker');
  await gwReset();
  const pool = gwPool(W);
  const utils = await gw.makeWorkerUtils({ pgPool: pool, logger: gwLogger() });
  const t0 = now();
  await shares(W, N, b, (i, k) => (k === 1 ? utils.addJob('noop', {})
    : utils.addJobs(range(k).map(() => ({ identifier: 'noop', payload: {} })))));
  const t = now() - t0;
  await utils.release();
  await pool.end();
  return N / t * 1000;
}
// batch 1: one job per fetch, one completion per job (the defaults);
// batch 10: localQueue of 10 and batched completion (the docs' throughput settings)
function gwPreset(b) {
  return b === 1 ? {} : { worker: { localQueue: { size: 10 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } };
}
async function gwRunner(b, taskList) {
  const gw = require('graphile-worker');
  const pool = gwPool(Math.max(10, W + 2));   // the docs: 10 or concurrentJobs + 2
  const runner = await gw.run({ pgPool: pool, concurrency: W, noHandleSignals: true, logger: gwLogger(),
    preset: gwPreset(b), taskList });
  return { runner, pool, async stop() { await runner.stop(); await pool.end(); } };
}
const gwLeft = async () => Number((await sql('bench_gw', 'SELECT count(*) AS n FROM graphile_worker._private_jobs'))[0].n);
async function gwDrain(b) {
  await gwEnqueue(10);
  await settle('bench_gw');
  let count = 0, t0 = null;
  const r = await gwRunner(b, { noop: async () => { if (t0 === null) t0 = now(); count++; } });
  await waitFor(() => count >= N, 20);
  await waitFor(async () => (await gwLeft()) === 0, 5);
  const t1 = now();
  await r.stop();
  return N / (t1 - t0) * 1000;
}
// DAG by hand: dag_pending counts each non-root step's unfinished parents; a
// finishing job decrements its children's counts and adds a job for each
// child that reached zero, in one statement
async function gwDag(set) {
  const shapesList = dagSets()[set];
  const byName = Object.fromEntries(shapesList.map((s) => [s.name, s]));
  const total = DAGS * shapesList.reduce((a, s) => a + s.steps.length, 0);
  await gwReset();
  let count = 0;
  const r = await gwRunner(Number(env.BENCH_GW_DAG_BATCH || 10), { dag: async (p, helpers) => {
    count++;
    const kids = children(byName[p.shape], p.step);
    if (kids.length) {
      await helpers.query(`WITH d AS (UPDATE dag_pending SET remaining = remaining - 1
                                       WHERE wf = $1 AND step = ANY($2) RETURNING step, remaining)
                           SELECT count(graphile_worker.add_job('dag'::text, json_build_object('wf', $1::int, 'shape', $3::text, 'step', step)))
                             FROM d WHERE remaining = 0`, [p.wf, kids, p.shape]);
    }
  } });
  await sleep(200);
  const c = await client('bench_gw');
  const t0 = now();
  let wf = 0;
  for (let k = 0; k < DAGS; k += 100) {
    for (const s of shapesList) {
      const pend = [], roots = [];
      for (let j = 0; j < Math.min(100, DAGS - k); j++) {
        wf++;
        for (const st of s.steps) {
          if (st.depends_on.length) pend.push({ wf, step: st.name, n: st.depends_on.length });
          else roots.push({ wf, shape: s.name, step: st.name });
        }
      }
      await c.query('BEGIN');
      await c.query(`INSERT INTO dag_pending SELECT (e->>'wf')::int, e->>'step', (e->>'n')::int
                       FROM jsonb_array_elements($1::jsonb) e`, [JSON.stringify(pend)]);
      await c.query(`SELECT count(graphile_worker.add_job('dag'::text, e::json)) FROM jsonb_array_elements($1::jsonb) e`, [JSON.stringify(roots)]);
      await c.query('COMMIT');
    }
  }
  await waitFor(() => count >= total, 10);
  await waitFor(async () => Number((await c.query('SELECT count(*) AS n FROM graphile_worker._private_jobs')).rows[0].n) === 0, 5);
  const t1 = now();
  await c.end();
  await r.stop();
  return total / (t1 - t0) * 1000;
}
async function gwLatency(shape) {
  const gw = require('graphile-worker');
  await gwReset();
  const trials = shape === 'chain5' ? CHAIN_TRIALS : LAT_TRIALS;
  const starts = new Map();
  const r = await gwRunner(1, {
    lat: async (p) => { starts.set(p.trial, [now()]); },
    chain: async (p, helpers) => {
      if (!starts.has(p.trial)) starts.set(p.trial, []);
      starts.get(p.trial)[p.level - 1] = now();
      if (p.level < 5) await helpers.addJob('chain', { trial: p.trial, level: p.level + 1 });
    } });
  const pool = gwPool(1);
  const utils = await gw.makeWorkerUtils({ pgPool: pool, logger: gwLogger() });
  await sleep(500);
  const out = [];
  for (let i = 0; i < trials; i++) {
    const t0 = now();
    if (shape === 'chain5') await utils.addJob('chain', { trial: i, level: 1 });
    else await utils.addJob('lat', { trial: i });
    const steps = shape === 'chain5' ? 5 : 1;
    await waitFor(() => (starts.get(i) || []).filter((x) => x).length === steps, 1);
    const ts = starts.get(i);
    out.push(steps === 1 ? ts[0] - t0 : (ts[4] - ts[0]) / 4);
    await waitFor(async () => (await gwLeft()) === 0, 2);
    await sleep(20 + Math.random() * 30);
  }
  await utils.release();
  await pool.end();
  await r.stop();
  return out;
}

// ---------------------------------------------------------------- pg-boss
async function bossStart(extra = {}) {
  const { PgBoss } = await import('pg-boss');
  const boss = new PgBoss({ connectionString: url('bench_boss'), max: W + 2, schedule: false, useListenNotify: true, ...extra });
  boss.on('error', (e) => console.error('pg-boss:', e.message));
  await boss.start();
  return boss;
}
async function bossReset(all) {
  await sql('bench_boss', all === 'all' ? 'DELETE FROM pgboss.job' : "DELETE FROM pgboss.job WHERE name <> 'w4' OR state <> 'completed'");
  await sql('bench_boss', 'DELETE FROM pgboss.job_dependency').catch(() => {});
  await settle('bench_boss');
}
const bossLeft = async (q) => Number((await sql('bench_boss', "SELECT count(*) AS n FROM pgboss.job WHERE name = $1 AND state <> 'completed'", [q]))[0].n);
async function bossEnqueue(b) {
  await bossReset();
  const boss = await bossStart({ supervise: false });
  const t0 = now();
  await shares(W, N, b, (i, k) => (k === 1 ? boss.send('w1', {}) : boss.insert('w1', range(k).map(() => ({ data: {} })))));
  const t = now() - t0;
  await boss.stop({ graceful: false });
  return N / t * 1000;
}
// batch 1: fetch 1, burst (no poll delay) while the queue's ready count, which
// the monitor refreshes every second here, is above 1; batch 10: batchSize 10,
// burst while fetches come back full (without a burst mode a worker waits its
// polling interval, 2 s by default, after every fetch)
const bossDrainConfig = (b) => (b === 1 ? { superviseIntervalSeconds: 1, monitorIntervalSeconds: 1, queueCacheIntervalSeconds: 1 } : {});
function bossWorkOptions(b) {
  return b === 1 ? { batchSize: 1, localConcurrency: W, burstWhenReadyExceeds: 1 }
    : { batchSize: b, localConcurrency: W, burstWhenBatchFull: true };
}
async function bossDrain(b) {
  await bossEnqueue(10);
  await settle('bench_boss');
  const boss = await bossStart(bossDrainConfig(b));
  let count = 0, t0 = null;
  await boss.work('w1', bossWorkOptions(b), async (jobs) => { if (t0 === null) t0 = now(); count += jobs.length; });
  await waitFor(() => count >= N, 20);
  await waitFor(async () => (await bossLeft('w1')) === 0, 5);
  const t1 = now();
  await boss.stop({ graceful: false });
  return N / (t1 - t0) * 1000;
}
// DAG with flow(): one flow() call per 100 workflows, dependsOn as in the
// template; the flow resolver runs every flowIntervalSeconds (1, its minimum)
// children that the flow resolver unblocks are not announced by NOTIFY: workers
// find them by polling, at the smallest interval pg-boss allows
const bossFlowPolling = { pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 };
async function bossFlowJobs(shape, prefix) {
  return shape.steps.map((s) => ({ ref: `${prefix}.${s.name}`, name: 'dag',
    data: { s: s.name }, dependsOn: s.depends_on.map((d) => `${prefix}.${d}`) }));
}
async function bossDag(set) {
  const shapesList = dagSets()[set];
  const total = DAGS * shapesList.reduce((a, s) => a + s.steps.length, 0);
  await bossReset();
  const boss = await bossStart({ supervise: true, flowIntervalSeconds: 1 });
  let count = 0;
  await boss.work('dag', { batchSize: 10, localConcurrency: W, burstWhenBatchFull: true, ...bossFlowPolling }, async (jobs) => { count += jobs.length; });
  await sleep(200);
  const t0 = now();
  let wf = 0;
  for (let k = 0; k < DAGS; k += 100) {
    for (const s of shapesList) {
      const jobs = [];
      for (let j = 0; j < Math.min(100, DAGS - k); j++) jobs.push(...await bossFlowJobs(s, `w${wf++}`));
      await boss.flow(jobs);
    }
  }
  await waitFor(() => count >= total, 10);
  await waitFor(async () => (await bossLeft('dag')) === 0, 5);
  const t1 = now();
  await boss.stop({ graceful: false });
  return total / (t1 - t0) * 1000;
}
async function bossLatency(shape) {
  await bossReset();
  const trials = shape === 'chain5' ? CHAIN_TRIALS : LAT_TRIALS;
  const boss = await bossStart({ supervise: shape === 'chain5', flowIntervalSeconds: 1 });
  const starts = new Map();
  await boss.work('lat', { batchSize: 1, localConcurrency: W, ...(shape === 'chain5' ? bossFlowPolling : {}) }, async ([job]) => {
    const t = now();
    if (!starts.has(job.data.trial)) starts.set(job.data.trial, []);
    starts.get(job.data.trial)[job.data.level - 1] = t;
  });
  await sleep(500);
  const out = [];
  for (let i = 0; i < trials; i++) {
    const t0 = now();
    if (shape === 'chain5') {
      await boss.flow(range(5).map((l) => ({ ref: `l${l + 1}`, name: 'lat', data: { trial: i, level: l + 1 },
        dependsOn: l ? [`l${l}`] : [] })));
    } else {
      await boss.send('lat', { trial: i, level: 1 });
    }
    const steps = shape === 'chain5' ? 5 : 1;
    await waitFor(() => (starts.get(i) || []).filter((x) => x).length === steps, 1);
    const ts = starts.get(i);
    out.push(steps === 1 ? ts[0] - t0 : (ts[4] - ts[0]) / 4);
    await waitFor(async () => (await bossLeft('lat')) === 0, 2);
    await sleep(20 + Math.random() * 30);
  }
  await boss.stop({ graceful: false });
  return out;
}
async function bossGrowth() {
  const boss = await bossStart({ supervise: false });
  for (let k = 0; k < GROWTH_JOBS; k += 1000) await boss.insert('w4', range(Math.min(1000, GROWTH_JOBS - k)).map(() => ({ data: {} })));
  await settle('bench_boss');
  const ms = [];
  for (;;) {
    const t = now();
    const jobs = await boss.fetch('w4', { batchSize: 1 });
    const d = now() - t;
    if (!jobs || jobs.length === 0) break;
    ms.push(d);
    await boss.complete('w4', jobs[0].id);
  }
  await boss.stop({ graceful: false });
  if (ms.length !== GROWTH_JOBS) throw new Error(`pg-boss fetched ${ms.length}`);
  return median(ms);
}
// 1,000,000 completed jobs in queue w4: copies of one completed job, new ids
async function bossFill() {
  const have = Number((await sql('bench_boss', "SELECT count(*) AS n FROM pgboss.job WHERE name = 'w4' AND state = 'completed'"))[0].n);
  if (have >= GROWTH_ROWS) return;
  const boss = await bossStart({ supervise: false });
  await boss.insert('w4', [{ data: {} }]);
  const [job] = await boss.fetch('w4');
  await boss.complete('w4', job.id);
  await boss.stop({ graceful: false });
  // jsonb_populate_record in FROM (LATERAL, fed g so that it runs per row):
  // as (f(...)).* in the select list it would run once per column
  await sql('bench_boss', `WITH model AS MATERIALIZED (SELECT to_jsonb(j) AS r FROM pgboss.job j WHERE j.id = $2)
      INSERT INTO pgboss.job
      SELECT r.* FROM model m, generate_series(1, $1) g,
             LATERAL jsonb_populate_record(NULL::pgboss.job, m.r || jsonb_build_object('id', gen_random_uuid(), 'g', g)) r`,
  [GROWTH_ROWS - have - 1, job.id]);
}

// ---------------------------------------------------------------- DBOS
// Workflows enqueued by a DBOSClient (no executor running), then one DBOS
// process executes them from a queue with workerConcurrency = W.
const DBOS_POLL_MS = Number(env.BENCH_DBOS_POLL_MS || 50);
async function dbosReset() {
  await sql('bench_dbos', 'DELETE FROM dbos.workflow_status').catch(() => {});
  await settle('bench_dbos');
}
async function dbosClient() {
  const { DBOSClient } = require('@dbos-inc/dbos-sdk');
  return DBOSClient.create({ systemDatabaseUrl: url('bench_dbos') });
}
async function dbosLaunch(handler) {
  const { DBOS } = require('@dbos-inc/dbos-sdk');
  DBOS.setConfig({ name: 'bench', systemDatabaseUrl: url('bench_dbos'), systemDatabasePoolSize: W + 2, logLevel: 'error' });
  DBOS.registerWorkflow(handler, { name: 'noop' });
  await DBOS.launch();
  const conc = Number(env.BENCH_DBOS_CONCURRENCY ?? 0);
  await DBOS.registerQueue('w1', { ...(conc ? { workerConcurrency: conc } : {}), minPollingIntervalMs: DBOS_POLL_MS, onConflict: 'always_update' });
  return DBOS;
}
async function dbosEnqueue() {
  await dbosReset();
  const c = await dbosClient();
  const t0 = now();
  await shares(W, N, 1, () => c.enqueue({ workflowName: 'noop', queueName: 'w1' }));
  const t = now() - t0;
  await c.destroy();
  return N / t * 1000;
}
const dbosLeft = async () => Number((await sql('bench_dbos', "SELECT count(*) AS n FROM dbos.workflow_status WHERE status NOT IN ('SUCCESS', 'ERROR')"))[0].n);
async function dbosDrain() {
  await dbosEnqueue();
  await settle('bench_dbos');
  let count = 0, t0 = null;
  const DBOS = await dbosLaunch(async () => { if (t0 === null) t0 = now(); count++; });
  await waitFor(() => count >= N, 20);
  await waitFor(async () => (await dbosLeft()) === 0, 5);
  const t1 = now();
  await DBOS.shutdown();
  return N / (t1 - t0) * 1000;
}
async function dbosLatency() {
  await dbosReset();
  const starts = new Map();
  const DBOS = await dbosLaunch(async (trial) => { starts.set(trial, now()); });
  const c = await dbosClient();
  await sleep(500);
  const out = [];
  for (let i = 0; i < LAT_TRIALS; i++) {
    const t0 = now();
    await c.enqueue({ workflowName: 'noop', queueName: 'w1' }, i);
    await waitFor(() => starts.has(i), 1);
    out.push(starts.get(i) - t0);
    await waitFor(async () => (await dbosLeft()) === 0, 2);
    await sleep(20 + Math.random() * 30);
  }
  await c.destroy();
  await DBOS.shutdown();
  return out;
}

// ---------------------------------------------------------------- the plan
// Each entry: workload label, system label, unit, higher-is-better, the call.
// Latency calls return a list of trials; the rest one figure per repetition.
function plan() {
  const P = [];
  const add = (w, s, unit, hib, fn, kind = 'rate') => P.push({ w, s, unit, hib, fn, kind });
  for (const b of [1, 10]) {
    const w = `1. enqueue ${N.toLocaleString('en')} jobs, ${W} connections, ${b} per transaction`;
    add(w, b === 1 ? 'tasker (create_task)' : 'tasker (create_tasks)', 'jobs/s', true, `taskerEnqueue w1ext ${b}`);
    add(w, 'floor (INSERT)', 'jobs/s', true, `floorEnqueue ${b}`);
    add(w, 'graphile-worker', 'jobs/s', true, `gwEnqueue ${b}`);
    add(w, 'pg-boss', 'jobs/s', true, `bossEnqueue ${b}`);
    if (b === 1) add(w, 'DBOS (client.enqueue)', 'jobs/s', true, 'dbosEnqueue');
    add(w, 'PgQ (insert_event)', 'jobs/s', true, `pgqEnqueue ${b}`);
  }
  for (const b of [1, 10]) {
    const w = `1. drain ${N.toLocaleString('en')} no-op jobs, ${W} workers, batch ${b}`;
    add(w, 'tasker external (claim_steps + complete_step' + (b > 1 ? 's' : '') + ')', 'jobs/s', true, `taskerExtDrain ${b}`);
    add(w, 'tasker external, claim + complete in one transaction', 'jobs/s', true, `taskerExtDrain ${b} onetx`);
    add(w, `tasker in-database (executor_batch_size ${b})`, 'jobs/s', true, `taskerSqlDrain ${b}`);
    add(w, `floor (SKIP LOCKED, claim ${b} + delete per commit)`, 'jobs/s', true, `floorDrain ${b}`);
    add(w, b === 1 ? 'graphile-worker (defaults)' : 'graphile-worker (localQueue 10, batched completion)', 'jobs/s', true, `gwDrain ${b}`);
    add(w, `pg-boss (batchSize ${b})`, 'jobs/s', true, `bossDrain ${b}`);
    if (b === 1) add(w, `DBOS (queue, no concurrency limit, pool of ${W + 2}, polling ${DBOS_POLL_MS} ms)`, 'jobs/s', true, 'dbosDrain');
    if (b === 10) add(w, 'PgQ (one batch per tick, a queue per worker)', 'jobs/s', true, 'pgqDrain');
  }
  add(`1. pgbench simple-update (-N), ${W} clients`, 'PostgreSQL', 'tx/s', true, 'pgbenchTps');
  for (const set of ['diamond4', 'reference']) {
    const w = set === 'diamond4' ? `2. DAG: ${DAGS.toLocaleString('en')} diamonds (4 steps)`
      : `2. DAG: ${DAGS.toLocaleString('en')} of each reference shape (5 shapes, 37 steps)`;
    add(w, 'tasker in-database (SQL handlers)', 'steps/s', true, `taskerDag ${set} sql`);
    add(w, 'tasker external (claim 10 + complete_steps, LISTEN)', 'steps/s', true, `taskerDag ${set} ext`);
    add(w, 'pg-boss flow() (flowIntervalSeconds 1)', 'steps/s', true, `bossDag ${set}`);
    add(w, 'graphile-worker (hand-written chaining)', 'steps/s', true, `gwDag ${set}`);
  }
  const wl = `3. wake-up latency: one job into an idle system, enqueue to handler start`;
  add(wl, 'tasker in-database (latch)', 'ms', false, 'taskerLatency sql one', 'lat');
  add(wl, 'tasker external (LISTEN tasker_ready_<queue>)', 'ms', false, 'taskerLatency ext one', 'lat');
  add(wl, 'graphile-worker (LISTEN/NOTIFY)', 'ms', false, 'gwLatency one', 'lat');
  add(wl, 'pg-boss (queue notify: true)', 'ms', false, 'bossLatency one', 'lat');
  add(wl, `DBOS (queue polling, minPollingIntervalMs ${DBOS_POLL_MS})`, 'ms', false, 'dbosLatency', 'lat');
  const wc = `3. 5-level chain: time per dependency level`;
  add(wc, 'tasker in-database', 'ms', false, 'taskerLatency sql chain5', 'lat');
  add(wc, 'tasker external (LISTEN)', 'ms', false, 'taskerLatency ext chain5', 'lat');
  add(wc, 'graphile-worker (job adds the next job)', 'ms', false, 'gwLatency chain5', 'lat');
  add(wc, 'pg-boss flow() (flowIntervalSeconds 1)', 'ms', false, 'bossLatency chain5', 'lat');
  const wg = (n) => `4. growth: one claim (max 1) of ${GROWTH_JOBS.toLocaleString('en')} ready, one worker, ${n} finished rows`;
  add(wg(0), 'tasker claim_steps', 'ms', false, 'taskerReset+taskerGrowth');
  add(wg(0), 'pg-boss fetch', 'ms', false, 'bossReset all+bossGrowth');
  add(wg(GROWTH_ROWS.toLocaleString('en')), 'tasker claim_steps', 'ms', false, 'taskerFill+taskerGrowth');
  add(wg(GROWTH_ROWS.toLocaleString('en')), 'pg-boss fetch', 'ms', false, 'bossReset+bossFill+bossGrowth');
  return P;
}
const calls = { dbosInit, taskerReset, bossReset, taskerEnqueue, taskerExtDrain, taskerSqlDrain, taskerDag, taskerLatency, taskerGrowth, taskerFill,
  floorEnqueue, floorDrain, pgbenchTps, pgqEnqueue, pgqDrain, gwEnqueue, gwDrain, gwDag, gwLatency,
  bossEnqueue, bossDrain, bossDag, bossLatency, bossGrowth, bossFill, dbosEnqueue, dbosDrain, dbosLatency };

// one measurement in this process: "fn args" (several joined by +), prints JSON
async function one(spec) {
  let result;
  for (const part of spec.split('+')) {
    const [fn, ...args] = part.split(' ');
    result = await calls[fn](...args.map((a) => (/^\d+$/.test(a) ? Number(a) : a)));
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
function child(spec) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [SELF, 'one', spec], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('close', (code) => {
      const line = out.trim().split('\n').pop();
      if (code !== 0 || !line) reject(new Error(`${spec}: exit ${code}`));
      else resolve(JSON.parse(line));
    });
  });
}
const fmt = (x) => (x >= 100 ? Math.round(x).toLocaleString('en') : x >= 10 ? x.toFixed(1) : x.toFixed(2));

async function all() {
  const P = plan().filter((p) => !ONLY || ONLY.test(`${p.w} ${p.s}`));
  const rows = [];
  for (const p of P) {
    let vals, note = '';
    try {
      if (p.kind === 'lat') {
        const trials = await child(p.fn);
        vals = trials;
        note = `p95 ${fmt(percentile(trials, 0.95))}`;
      } else {
        vals = [];
        for (let r = 0; r < REPEAT; r++) vals.push(await child(p.fn));
      }
    } catch (e) {
      console.error(`failed: ${p.w} / ${p.s}: ${e.message}`);
      vals = [];
      note = 'failed';
    }
    const row = { ...p, vals, med: median(vals), min: Math.min(...vals), max: Math.max(...vals), note };
    rows.push(row);
    appendFileSync(OUT, `${JSON.stringify({ w: p.w, s: p.s, unit: p.unit, vals, at: new Date().toISOString() })}\n`);
    console.error(`  ${p.w} | ${p.s}: ${vals.length ? fmt(row.med) : '-'} ${p.unit} ${note}`);
  }
  // the table: per workload, the ratio against its first tasker row (">1: tasker better")
  const lines = ['| workload | system | median | min | max | unit | tasker ÷ this |', '|---|---|---:|---:|---:|---|---:|'];
  let last = null;
  for (const r of rows) {
    const ref = rows.find((x) => x.w === r.w && x.s.startsWith('tasker') && x.vals.length);
    let ratio = '';
    if (ref && ref !== r && r.vals.length) ratio = (r.hib ? ref.med / r.med : r.med / ref.med).toFixed(2);
    if (ref === r) ratio = '1 (ref.)';
    const w = r.w === last ? '' : r.w;
    last = r.w;
    const count = r.kind === 'lat' ? ` (${r.vals.length} trials, ${r.note})` : '';
    lines.push(`| ${w} | ${r.s}${count} | ${r.vals.length ? fmt(r.med) : r.note} | ${r.vals.length ? fmt(r.min) : ''} | ${r.vals.length ? fmt(r.max) : ''} | ${r.unit} | ${ratio} |`);
  }
  lines.push('', 'tasker ÷ this: against the first tasker row of the same workload; above 1, tasker is better (more per second, or fewer ms).');
  console.log(lines.join('\n'));
  writeFileSync(OUT.replace(/\.jsonl$/, '.md'), `${lines.join('\n')}\n`);
}

const [cmd, arg] = process.argv.slice(2);
const main = { setup, all, one: () => one(arg) }[cmd];
if (!main) { console.error('usage: node bench.mjs setup | all | one "FN ARGS"'); process.exit(2); }
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
