-- Dynamic concurrency: clamp(min(slot_term, load_term), min, max), the
-- Rails engine's formula on PostgreSQL's gauges.  concurrency_formula()
-- applies it to given inputs, so each branch can be shown.

-- Pressure levels of the slot term: used/total <= 0.5 low (factor 0.8),
-- <= 0.7 moderate (0.6), <= 0.85 high (0.4), above critical (0.2); the
-- free slots times the factor.  Light load, so the load term is max (12).
SELECT active_connections_ AS active, max_connections_ AS max, connection_pressure,
       pressure_level, slot_term, load_term, concurrency
  FROM (VALUES (10), (50), (51), (70), (71), (85), (86), (100)) AS v(active),
       LATERAL tasker.concurrency_formula(v.active, 100, 0, 1000, 0.0, 0.0, 3, 12)
 ORDER BY active;

-- Worker slots count too; the smaller term wins.
SELECT busy_workers_ AS busy, max_workers_ AS max, worker_pressure, pressure_level, slot_term,
       concurrency
  FROM (VALUES (0), (4), (6), (7)) AS v(busy),
       LATERAL tasker.concurrency_formula(1, 100, v.busy, 8, 0.0, 0.0, 3, 12)
 ORDER BY busy;

-- The load term: combined = 0.3 * task load + 0.7 * step load; <= 0.3 -> max,
-- <= 0.6 -> min + 60% of (max - min), above -> min + 1.
SELECT task_load_ AS task_load, step_load_ AS step_load, combined_load, load_term, concurrency
  FROM (VALUES (0.0, 0.0), (1.0, 0.0), (0.0, 0.43), (0.5, 0.6), (0.0, 0.86), (1.0, 1.0)) AS v(t, s),
       LATERAL tasker.concurrency_formula(0, 1000, 0, 1000, v.t, v.s, 3, 12)
 ORDER BY combined_load;

-- The clamp: never below min, never above max.
SELECT concurrency FROM tasker.concurrency_formula(99, 100, 0, 100, 0, 0, 3, 12);   -- slot term 0 -> min
SELECT concurrency FROM tasker.concurrency_formula(0, 1000, 0, 1000, 0, 0, 2, 5);   -- 800 -> max

-- Bad inputs.
SELECT concurrency FROM tasker.concurrency_formula(0, 100, 0, 100, 0, 0, 5, 3);
SELECT concurrency FROM tasker.concurrency_formula(NULL, 100, 0, 100, 0, 0, 3, 12);

-- The live figure names every input, and stays within the GUC bounds.
SELECT concurrency BETWEEN min_concurrent_steps AND max_concurrent_steps AS within_bounds,
       min_concurrent_steps, max_concurrent_steps,
       max_connections = current_setting('max_connections')::int AS reads_max_connections,
       max_workers = current_setting('max_worker_processes')::int AS reads_max_workers,
       active_connections >= 1 AS sees_this_session,
       computed_at IS NOT NULL AS computed
  FROM tasker.concurrency(true);
