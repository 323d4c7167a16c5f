#!/usr/bin/env bash
# test/bench/readiness/run.sh — the readiness family against the Rails
# engine's figures quoted in issue 3.
#
# Run as root from anywhere.  It builds and installs tasker (unless
# BENCH_NO_INSTALL=1), starts a throwaway PostgreSQL as user postgres on a
# free port from 55770 (tasker preloaded, dispatch paused, synchronous_commit
# off), and builds the issue's layered random DAG — each step depends on the
# one before and on one earlier step — for 10, 100 and 1,000 steps, in an
# empty database and in one holding 1,000,000 finished steps of other tasks.
# For each it prints the median, over BENCH_RUNS (default 50) executions
# timed inside the server, of
#   step_readiness_status, task_execution_context, dependency_levels,
#   system_health_counts, analytics_metrics
# next to the Rails figures, and then
#   - what counting steps per state with an index-only scan costs at 1M steps
#     (what the maintained counters replace);
#   - which scans analytics_metrics uses (auto_explain);
#   - the cost of the state counters on the hot path: the backend CPU time
#     of 2,000 claim + complete pairs with the counting triggers on and off,
#     alternated BENCH_REPEAT (default 7) times.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
runs=${BENCH_RUNS:-50}
repeat=${BENCH_REPEAT:-7}

[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)"; exit 1; }
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    make -s -C "$top" >/dev/null || { echo "build failed"; exit 1; }
    make -s -C "$top" install >/dev/null || { echo "install failed"; exit 1; }
fi
bindir=$(pg_config --bindir)
as_pg() { runuser -u postgres -- "$@"; }

work=$(mktemp -d /tmp/tasker-bench-readiness.XXXXXX)
chown postgres "$work"
port=55770
while [ -e "/tmp/.s.PGSQL.$port" ] || [ "$port" = 5432 ] || [ "$port" = 5499 ] ||
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
done
cleanup() {
    as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres -E UTF8 >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'tasker'
shared_buffers = 512MB
max_wal_size = 8GB
synchronous_commit = off
tasker.enabled = off
tasker.poll_interval = '10min'
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w start >/dev/null

pg() { "$bindir/psql" -h "$work" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
pgv() { pg -At "$@"; }

results="$work/results"
: > "$results"

# measure DB: times the per-task functions on the layered tasks and the
# system-wide ones, appending "function|steps|db|ms" lines to $results.
measure() {
    local db=$1
    pgv -d "$db" >> "$results" <<SQL
SELECT format('%s|%s|$db|%s', f, n, bench.time_ms(format(q, t), $runs))
  FROM (VALUES (10), (100), (1000)) s(n)
  JOIN bench_tasks USING (n)
 CROSS JOIN (VALUES (1, 'step_readiness_status', 'SELECT count(*) FROM tasker.step_readiness_status(%s)'),
                    (2, 'task_execution_context', 'SELECT count(*) FROM tasker.task_execution_context(%s)'),
                    (3, 'dependency_levels', 'SELECT count(*) FROM tasker.dependency_levels(%s)')) f(o, f, q)
 ORDER BY o, n;
SELECT format('system_health_counts|-|$db|%s', bench.time_ms('SELECT * FROM tasker.system_health_counts()', $runs));
SELECT format('analytics_metrics|-|$db|%s', bench.time_ms('SELECT * FROM tasker.analytics_metrics()', $runs));
SQL
}

setup_db() {
    local db=$1
    pg -d postgres -c "CREATE DATABASE $db"
    pg -d "$db" -c "CREATE EXTENSION tasker" -f "$here/helpers.sql"
}

make_tasks() {
    pg -d "$1" <<'SQL'
CREATE TABLE bench_tasks AS SELECT n, bench.layered(n) AS t FROM (VALUES (10), (100), (1000)) s(n);
VACUUM ANALYZE;
SQL
}

# Every database gets the extension now, right after the install: a later
# install by someone else into the same PostgreSQL would not match the library
# this server loaded.
setup_db bench_empty
setup_db bench_loaded
setup_db bench_claims

echo "building the empty database ..." >&2
make_tasks bench_empty
measure bench_empty

echo "building the database with 1,000,000 finished steps (about a minute) ..." >&2
pg -d bench_loaded -f "$here/filler.sql" >/dev/null
make_tasks bench_loaded
measure bench_loaded

steps_loaded=$(pgv -d bench_loaded -c "SELECT total_steps FROM tasker.system_health_counts()")
exact=$(pgv -d bench_loaded -c "SELECT h.total_steps = (SELECT count(*) FROM tasker.workflow_steps)
                                   AND h.complete_steps = (SELECT count(*) FROM tasker.workflow_steps
                                                            WHERE current_state = 'complete')
                                  FROM tasker.system_health_counts() h")

# What index-only counting gives at this size (the alternative to counters).
index_only=$(pgv -d bench_loaded <<SQL
CREATE INDEX bench_state_idx ON tasker.workflow_steps (current_state);
CREATE INDEX bench_task_state_idx ON tasker.tasks (current_state);
VACUUM ANALYZE tasker.workflow_steps, tasker.tasks;
SELECT bench.time_ms('SELECT current_state, count(*) FROM tasker.workflow_steps GROUP BY 1', 10)
       || ' ms for steps, '
       || bench.time_ms('SELECT current_state, count(*) FROM tasker.tasks GROUP BY 1', 10)
       || ' ms for tasks';
DROP INDEX tasker.bench_state_idx;
DROP INDEX tasker.bench_task_state_idx;
SQL
)

# Which scans analytics_metrics makes (its statements, via auto_explain).
scans=$(pg -d bench_loaded 2>&1 <<'SQL' | grep -Eo '(Index Only Scan|Index Scan|Bitmap Heap Scan|Bitmap Index Scan|Seq Scan)( Backward)? (using [a-z_]+ )?on [a-z_]+' | sort | uniq -c
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET client_min_messages = log;
SELECT * FROM tasker.analytics_metrics();
SQL
)

# The state counters on the hot path: the CPU time of claim + complete (two
# transactions, in a procedure loop) with the counting triggers on and off,
# alternated; CPU time of the backend (/proc/PID/schedstat) rather than wall
# time, which the other processes of a busy machine would blur.
echo "measuring claim + complete with the counting triggers on and off ..." >&2
pg -d bench_claims >/dev/null <<'SQL'
SELECT tasker.register_template('{"namespace": "cc", "name": "one", "version": "1.0.0",
                                  "steps": [{"name": "x", "queue": "cc"}]}') IS NOT NULL;
SELECT count(tasker.create_task('cc', 'one')) FROM generate_series(1, 2000 * 16);
VACUUM ANALYZE;
CREATE PROCEDURE bench.claim_complete(n integer) LANGUAGE plpgsql AS $$
DECLARE
    step bigint;
    attempt integer;
BEGIN
    FOR i IN 1 .. n LOOP
        SELECT c.step_id, c.attempt INTO step, attempt FROM tasker.claim_steps('cc', 'w', 1) c;
        COMMIT;
        PERFORM tasker.complete_step(step, attempt);
        COMMIT;
    END LOOP;
END $$;
SQL
pairs=2000
cpu_ms() {   # cpu_ms ENABLE|DISABLE: backend CPU microseconds for $pairs claim + complete
    local how=$1 pid t0 t1 done
    coproc PSQL { pg -A -t -d bench_claims; }
    echo "ALTER TABLE tasker.workflow_steps $how TRIGGER workflow_steps_count_moves;
          ALTER TABLE tasker.tasks $how TRIGGER tasks_count_moves;
          SELECT pg_backend_pid();" >&"${PSQL[1]}"
    read -r pid <&"${PSQL[0]}"
    t0=$(awk '{ print $1 }' "/proc/$pid/schedstat")
    echo "CALL bench.claim_complete($pairs); SELECT 'done';" >&"${PSQL[1]}"
    read -r done <&"${PSQL[0]}"
    t1=$(awk '{ print $1 }' "/proc/$pid/schedstat")
    echo '\q' >&"${PSQL[1]}"
    wait "$PSQL_PID" 2>/dev/null || true
    echo $(( (t1 - t0) / 1000 ))
}
: > "$work/cpu"
for i in $(seq "$repeat"); do
    echo "on $(cpu_ms ENABLE)" >> "$work/cpu"
    echo "off $(cpu_ms DISABLE)" >> "$work/cpu"
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Report -------------------------------------------------------------------
rails() {
    case "$1|$2|$3" in
        step_readiness_status\|10\|bench_empty) echo 1.7 ;;
        step_readiness_status\|100\|bench_empty) echo 2.0 ;;
        step_readiness_status\|1000\|bench_empty) echo 5.6 ;;
        step_readiness_status\|10\|bench_loaded) echo 1.9 ;;
        step_readiness_status\|100\|bench_loaded) echo 2.8 ;;
        step_readiness_status\|1000\|bench_loaded) echo 7.4 ;;
        task_execution_context\|1000\|*) echo 17 ;;
        dependency_levels\|10\|*) echo 108 ;;
        dependency_levels\|100\|*) echo ">60000" ;;
        system_health_counts\|-\|bench_loaded) echo 900 ;;
        *) echo - ;;
    esac
}
target() {
    case "$1|$2|$3" in
        step_readiness_status\|1000\|bench_empty) echo "<= 0.56" ;;
        step_readiness_status\|1000\|bench_loaded) echo "<= 0.74" ;;
        task_execution_context\|1000\|*) echo "< 2" ;;
        dependency_levels\|1000\|*) echo "< 20" ;;
        system_health_counts\|-\|bench_loaded) echo "< 10" ;;
        *) echo "" ;;
    esac
}

echo
echo "tasker readiness benchmark — $(nproc) cores, $(pg_config --version), median of $runs runs, ms, timed in the server"
echo
printf '| %-23s | %5s | %-12s | %9s | %8s | %8s | %8s |\n' function steps database tasker Rails speedup target
printf '|%s|%s|%s|%s|%s|%s|%s|\n' -------------------------  -------  --------------  -----------  ----------  ----------  ----------
while IFS='|' read -r f n db ms; do
    r=$(rails "$f" "$n" "$db")
    case "$r" in
        -) speedup=- ;;
        \>*) speedup=$(awk -v r="${r#>}" -v m="$ms" 'BEGIN { printf ">%.0fx", r / m }') ;;
        *) speedup=$(awk -v r="$r" -v m="$ms" 'BEGIN { printf "%.0fx", r / m }') ;;
    esac
    label=$([ "$db" = bench_empty ] && echo empty || echo "1M finished")
    printf '| %-23s | %5s | %-12s | %9s | %8s | %8s | %8s |\n' "$f" "$n" "$label" "$ms" "$r" "$speedup" "$(target "$f" "$n" "$db")"
done < "$results"

echo
for n in 10 100 1000; do
    e=$(awk -F'|' -v n=$n '$1 == "step_readiness_status" && $2 == n && $3 == "bench_empty" { print $4 }' "$results")
    l=$(awk -F'|' -v n=$n '$1 == "step_readiness_status" && $2 == n && $3 == "bench_loaded" { print $4 }' "$results")
    echo "step_readiness_status, $n steps: 1M finished steps / empty = $(awk -v e="$e" -v l="$l" 'BEGIN { printf "%.2f", l / e }')x (target <= 1.2x)"
done
echo "system_health_counts at $steps_loaded steps: counters equal a full count: $exact"
echo "index-only counting per state at 1M steps, for comparison: $index_only"
echo "analytics_metrics scans (auto_explain of its statements, at 1M steps):"
echo "$scans" | sed 's/^/    /'
echo
on=$(awk '$1 == "on" { print $2 }' "$work/cpu" | median)
off=$(awk '$1 == "off" { print $2 }' "$work/cpu" | median)
awk -v on="$on" -v off="$off" -v n=$pairs -v r="$repeat" 'BEGIN {
    printf "claim + complete (2 transactions), backend CPU time, median of %d alternated runs of %d:\n", r, n
    printf "    %.0f us with the state counters, %.0f us without: %+.0f us (%+.1f%%) per claim + complete\n",
           on / n, off / n, (on - off) / n, 100 * (on - off) / off }'
echo "    (no waiting between sessions: test/isolation/specs/state_counts_race.spec)"
