#!/usr/bin/env bash
# test/bench/workers/run.sh — in-database steps (SQL handlers run by tasker's
# background workers) against the same steps worked by external workers
# (claim_steps + complete_step from pgbench clients), in one run on one
# machine, plus the latency of a 5-step chain on an idle server.
#
# Run as root: builds and installs tasker (unless BENCH_NO_INSTALL=1), starts
# a throwaway PostgreSQL as user postgres (fsync and synchronous_commit on),
# and for 1, 4 and 12 executors (external: as many pgbench clients) drains
# BENCH_TASKS (default 1000) tasks of the Rails engine's five test shapes in
# its benchmark mix (30 % linear, 25 % diamond, 20 % parallel merge, 15 %
# tree, 10 % mixed) with no-op steps, BENCH_REPEAT (default 3) times, and
# prints medians (min–max) of steps per second and of the per-task time from
# create_task to complete, both counted from the commit of the transaction
# that created the tasks (no step can start before it; how long that
# transaction took is printed on its own).  BENCH_COMMIT_WINDOW (default 10ms) sets
# tasker.executor_commit_window (0: a transaction per in-database step),
# BENCH_EXECUTOR_BATCH (default: tasker's) tasker.executor_batch_size.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
tasks=${BENCH_TASKS:-1000}
repeat=${BENCH_REPEAT:-3}
workers_list=${BENCH_WORKERS:-"1 4 12"}
chain_trials=${BENCH_CHAIN_TRIALS:-30}

[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)"; exit 1; }
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    make -s -C "$top" >/dev/null && make -s -C "$top" install >/dev/null
fi
bindir=$(pg_config --bindir)
as_pg() { runuser -u postgres -- "$@"; }

work=$(mktemp -d /tmp/tasker-bench-workers.XXXXXX)
chown postgres "$work"
port=54380
while [ -e "/tmp/.s.PGSQL.$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
done
cleanup() {
    pkill -f "pgbench.*$work" 2>/dev/null || true
    as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'tasker'
fsync = on
synchronous_commit = on
max_connections = 50
max_worker_processes = 40
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
tasker.poll_interval = 1s
tasker.executor_idle_timeout = 60s
tasker.executor_commit_window = ${BENCH_COMMIT_WINDOW:-10ms}
CONF
if [ -n "${BENCH_EXECUTOR_BATCH:-}" ]; then
    echo "tasker.executor_batch_size = $BENCH_EXECUTOR_BATCH" >> "$work/data/postgresql.conf"
fi
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql() { as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
pgbench() { as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$bindir/pgbench" "$@"; }

psql -c "CREATE EXTENSION tasker"
psql -c "CREATE FUNCTION public.noop(input jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb'"
# every reference shape twice: namespace bench_sql (no-op SQL handlers) and
# bench_ext (external steps on queue "ext")
for f in "$top"/../shared/workflows/*.json /work/shared/workflows/*.json; do
    [ -f "$f" ] || continue
    body=$(cat "$f")
    psql -v body="$body" <<'SQL' >/dev/null
SELECT tasker.register_template(jsonb_set(:'body'::jsonb || '{"namespace": "bench_sql"}', '{steps}',
         (SELECT jsonb_agg(s || '{"handler": "public.noop(jsonb)"}')
            FROM jsonb_array_elements((:'body'::jsonb)->'steps') s)))
 WHERE NOT EXISTS (SELECT 1 FROM tasker.templates
                    WHERE namespace = 'bench_sql' AND name = (:'body'::jsonb)->>'name');
SELECT tasker.register_template(jsonb_set(:'body'::jsonb || '{"namespace": "bench_ext"}', '{steps}',
         (SELECT jsonb_agg(s || '{"queue": "ext"}')
            FROM jsonb_array_elements((:'body'::jsonb)->'steps') s)))
 WHERE NOT EXISTS (SELECT 1 FROM tasker.templates
                    WHERE namespace = 'bench_ext' AND name = (:'body'::jsonb)->>'name');
SQL
done

# create_mix NAMESPACE: the benchmark mix of $tasks tasks, in one
# transaction; records when it committed (a second statement of the same
# session) and how long it took.  No step can start before that commit, so
# the figures below count from it; the creation itself, the same work for
# both kinds of step, is reported on its own.
create_mix() {
    psql -F ' ' -c "SELECT clock_timestamp()" \
         -c "SELECT count(tasker.create_task('$1', shape))
               FROM (SELECT CASE WHEN g <= 0.30 * $tasks THEN 'linear_workflow'
                                 WHEN g <= 0.55 * $tasks THEN 'diamond_workflow'
                                 WHEN g <= 0.75 * $tasks THEN 'parallel_merge_workflow'
                                 WHEN g <= 0.90 * $tasks THEN 'tree_workflow'
                                 ELSE 'mixed_workflow' END AS shape
                       FROM generate_series(1, $tasks) g) m" \
         -c "SELECT clock_timestamp()" | {
        read -r started; read -r _; read -r committed
        echo "$committed" >"$work/committed"
        psql -c "SELECT round((extract(epoch FROM '$committed'::timestamptz - '$started'::timestamptz) * 1000)::numeric)" >"$work/create_ms"
    }
}
unfinished() { psql -c "SELECT count(*) FROM tasker.tasks WHERE current_state NOT IN ('complete', 'error')"; }
wait_drained() {
    while [ "$(unfinished)" != 0 ]; do sleep 0.05; done
}
# figures of the last drain, from the creation's commit: steps/s until the
# last task completed, median task latency (commit to its completion, ms)
drain_figures() {
    psql -F ' ' -c "SELECT round((SELECT count(*) FROM tasker.workflow_steps)
                          / extract(epoch FROM max(completed_at) - '$(cat "$work/committed")'::timestamptz)),
                           round((percentile_cont(0.5) WITHIN GROUP (ORDER BY
                                  extract(epoch FROM completed_at - '$(cat "$work/committed")'::timestamptz)) * 1000)::numeric)
                      FROM tasker.tasks"
}
reset_tables() {
    psql -c "DELETE FROM tasker.tasks"
    psql -c "VACUUM ANALYZE" 2>/dev/null
    psql -c "CHECKPOINT"
}
set_workers() {
    psql -c "ALTER SYSTEM SET tasker.max_executors = $1" \
         -c "ALTER SYSTEM SET tasker.min_concurrent_steps = $1" \
         -c "ALTER SYSTEM SET tasker.max_concurrent_steps = $1" \
         -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }

cat > "$work/external.sql" <<'SQL'
SELECT coalesce(max(step_id), 0) AS sid, coalesce(max(attempt), 0) AS att
  FROM tasker.claim_steps('ext', 'w' || :client_id, 1, '5 minutes') \gset
SELECT CASE WHEN :sid = 0 THEN pg_sleep(0.001) IS NULL ELSE tasker.complete_step(:sid, :att) END;
SQL
chown postgres "$work/external.sql"

steps_total=0
echo "tasker in-database vs external steps: $(nproc) cores, PostgreSQL $("$bindir/postgres" -V | awk '{ print $3 }'), fsync on"
echo "$tasks tasks of the five reference shapes per run (mix 30/25/20/15/10), created in one transaction, no-op steps, median (min–max) of $repeat runs"
echo "steps/s and task latency count from the creation's commit; creation ms: the creating transaction (in-db runs)"
echo "tasker.executor_batch_size = $(psql -c 'SHOW tasker.executor_batch_size'), executor_commit_window = $(psql -c 'SHOW tasker.executor_commit_window')"
echo
printf '| %-9s | %-28s | %-24s | %-28s | %-24s | %-6s | %-16s |\n' workers "in-db steps/s" "in-db task ms (median)" "external steps/s" "external task ms" ratio "creation ms"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ------------------------------ -------------------------- ------------------------------ -------------------------- -------- ------------------
for w in $workers_list; do
    in_rate=(); in_lat=(); ex_rate=(); ex_lat=(); create_ms=()
    set_workers "$w"
    for r in $(seq "$repeat"); do
        reset_tables
        create_mix bench_sql
        wait_drained
        read -r rate lat <<<"$(drain_figures)"
        in_rate+=("$rate"); in_lat+=("$lat"); create_ms+=("$(cat "$work/create_ms")")

        reset_tables
        create_mix bench_ext
        pgbench -n -c "$w" -j "$w" -T 600 -f "$work/external.sql" >/dev/null 2>&1 &
        wait_drained
        pkill -f "pgbench -n -c $w -j $w -T 600" || true
        wait || true
        read -r rate lat <<<"$(drain_figures)"
        ex_rate+=("$rate"); ex_lat+=("$lat")
    done
    ir=$(median "${in_rate[@]}"); er=$(median "${ex_rate[@]}")
    printf '| %-9s | %-28s | %-24s | %-28s | %-24s | %-6s | %-16s |\n' "$w" \
        "$ir ($(range "${in_rate[@]}"))" "$(median "${in_lat[@]}") ($(range "${in_lat[@]}"))" \
        "$er ($(range "${ex_rate[@]}"))" "$(median "${ex_lat[@]}") ($(range "${ex_lat[@]}"))" \
        "$(awk -v a="$ir" -v b="$er" 'BEGIN { printf "%.2f", a / b }')" \
        "$(median "${create_ms[@]}")"
done

# a 5-step chain of no-op SQL steps on an idle server: create_task to complete
psql -c "SELECT tasker.register_template('{\"namespace\": \"bench_sql\", \"name\": \"chain5\", \"steps\": [
  {\"name\": \"s1\", \"handler\": \"public.noop(jsonb)\"},
  {\"name\": \"s2\", \"handler\": \"public.noop(jsonb)\", \"depends_on\": [\"s1\"]},
  {\"name\": \"s3\", \"handler\": \"public.noop(jsonb)\", \"depends_on\": [\"s2\"]},
  {\"name\": \"s4\", \"handler\": \"public.noop(jsonb)\", \"depends_on\": [\"s3\"]},
  {\"name\": \"s5\", \"handler\": \"public.noop(jsonb)\", \"depends_on\": [\"s4\"]}]}')" >/dev/null
set_workers 4
reset_tables
for i in $(seq "$chain_trials"); do
    psql -c "SELECT tasker.create_task('bench_sql', 'chain5')" >/dev/null
    wait_drained
    sleep 0.2
done
echo
psql -F ' ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                       round(min(ms)::numeric, 1), round(max(ms)::numeric, 1)
                  FROM (SELECT extract(epoch FROM completed_at - created_at) * 1000 AS ms
                          FROM tasker.tasks) t" |
    awk -v n="$chain_trials" '{ printf "5-step chain of no-op SQL steps, create_task to complete (%d trials): median %s ms, p95 %s ms (min %s, max %s); %.1f ms per level\n", n, $1, $2, $3, $4, $1 / 5 }'
