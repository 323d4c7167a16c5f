#!/usr/bin/env bash
# test/bench/soak/run.sh — a long mixed workload at a steady rate (not in CI).
#
# Starts a throwaway PostgreSQL (autovacuum on, its defaults) with tasker
# preloaded and runs, for SOAK_MINUTES (default 30):
#   - a creator: pgbench at a fixed rate (SOAK_RATE tasks/s, default 20) of a
#     five-step template, a (sql) -> b (external), c (sql) -> d (sql) -> e
#     (external), whose c fails retryably one time in SOAK_FAIL_EVERY (20);
#   - external workers: SOAK_WORKERS pgbench clients (4) that claim one step
#     with a 30 s lease and complete it, recording how long the claim took
#     inside the server in the step's results;
#   - retention: every SOAK_ARCHIVE_EVERY seconds (15), tasker.archive_tasks
#     (SOAK_RETENTION, default '2 minutes'; batches of 1000, errors too) in a
#     loop until it returns 0.
# Every SOAK_SAMPLE seconds (60) it records, into CSV files under SOAK_OUT
# (default: a new directory under /tmp, printed at the end):
#   memory.csv  — per tasker process (launcher, dispatcher, executors) and per
#                 worker backend: RSS, PSS and private anonymous memory from
#                 /proc/<pid>/smaps_rollup;
#   tables.csv  — per tasker table and index: size, live and dead tuples,
#                 autovacuum runs, and with pgstattuple (when installed)
#                 dead-tuple and free-space percentages (tables) and leaf
#                 density (btree indexes);
#   latency.csv — per window: tasks and steps finished, create-to-complete
#                 p50/p90/p99 (ms), claim p50/p90/p99 (µs, inside the server);
#   archive.csv — per retention run: tasks deleted, milliseconds.
# At the end it prints a summary in Markdown (doc/soak.md holds one).
#
# Run as root: builds and installs tasker with PG_CONFIG (default pg_config)
# unless BENCH_NO_INSTALL=1; the server runs as user postgres.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
minutes=${SOAK_MINUTES:-30}
rate=${SOAK_RATE:-20}
workers=${SOAK_WORKERS:-4}
sample=${SOAK_SAMPLE:-60}
archive_every=${SOAK_ARCHIVE_EVERY:-15}
retention=${SOAK_RETENTION:-2 minutes}
fail_every=${SOAK_FAIL_EVERY:-20}
pg_config=${PG_CONFIG:-pg_config}

[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)"; exit 1; }
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    make -s -C "$top" PG_CONFIG="$pg_config" >/dev/null
    make -s -C "$top" PG_CONFIG="$pg_config" install >/dev/null
fi
bindir=$("$pg_config" --bindir)
as_pg() { runuser -u postgres -- "$@"; }

work=$(mktemp -d /tmp/tasker-soak.XXXXXX)
chown postgres "$work"
out=${SOAK_OUT:-$work/out}
mkdir -p "$out"
port=54480
while [ -e "/tmp/.s.PGSQL.$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
done
children=()
cleanup() {
    for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work/data"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'tasker'
max_connections = 50
max_worker_processes = 40
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 5min
log_autovacuum_min_duration = 0
tasker.poll_interval = 200ms
tasker.backoff_base = 1
tasker.executor_idle_timeout = 60s
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql() { as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
pgbench() { as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" PGAPPNAME="$1" "$bindir/pgbench" "${@:2}"; }

psql -c "CREATE EXTENSION tasker"
stattuple=$(psql -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgstattuple'")
[ "$stattuple" = 1 ] && psql -c "CREATE EXTENSION pgstattuple"
psql <<SQL >/dev/null
CREATE SCHEMA soak;
CREATE FUNCTION soak.work(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
    IF input ->> 'step_name' = 'c' AND (input ->> 'step_id')::bigint % $fail_every = 0
       AND (input ->> 'attempt')::integer = 1 THEN
        RAISE EXCEPTION 'flaky first attempt';
    END IF;
    RETURN jsonb_build_object('step', input ->> 'step_name', 'digest', md5(input::text));
END \$\$;
-- an external claim, timed inside the server
CREATE FUNCTION soak.claim(worker text, OUT step_id bigint, OUT attempt integer, OUT claim_us bigint)
    LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    SELECT c.step_id, c.attempt INTO step_id, attempt
      FROM tasker.claim_steps('soak', worker, 1, '30 seconds') c;
    claim_us := (extract(epoch FROM clock_timestamp() - t0) * 1e6)::bigint;
END \$\$;
SELECT tasker.register_template('{
  "namespace": "soak", "name": "mixed", "version": "1.0.0",
  "steps": [
    {"name": "a", "handler": "soak.work(jsonb)"},
    {"name": "b", "queue": "soak", "depends_on": ["a"]},
    {"name": "c", "handler": "soak.work(jsonb)", "depends_on": ["a"], "max_attempts": 5},
    {"name": "d", "handler": "soak.work(jsonb)", "depends_on": ["b", "c"]},
    {"name": "e", "queue": "soak", "depends_on": ["d"]}
  ]}');
SQL

cat > "$work/create.sql" <<'SQL'
SELECT tasker.create_task('soak', 'mixed', context => jsonb_build_object('client', :client_id));
SQL
cat > "$work/work.sql" <<'SQL'
SELECT coalesce(step_id, 0) AS sid, coalesce(attempt, 0) AS att, claim_us
  FROM soak.claim('soak-' || :client_id) \gset
\if :sid
SELECT tasker.complete_step(:sid, :att, jsonb_build_object('claim_us', :claim_us));
\else
\sleep 10 ms
\endif
SQL
chown postgres "$work"/*.sql

seconds=$((minutes * 60))
start=$(date +%s)
pgbench soak-creator -n -c 2 -j 2 -R "$rate" -T "$seconds" -f "$work/create.sql" >"$work/create.log" 2>&1 &
children+=($!)
pgbench soak-worker -n -c "$workers" -j "$workers" -T "$seconds" -f "$work/work.sql" >"$work/work.log" 2>&1 &
children+=($!)

# retention, in the background
echo "t,deleted,ms" > "$out/archive.csv"
(
    while :; do
        sleep "$archive_every"
        # one session, a transaction per batch, until a batch finds nothing
        psql -c "DO \$\$ DECLARE n bigint; total bigint := 0; t0 timestamptz := clock_timestamp();
                 BEGIN
                     LOOP
                         n := tasker.archive_tasks('$retention', 1000, include_errors => true);
                         COMMIT;
                         total := total + n;
                         EXIT WHEN n = 0;
                     END LOOP;
                     RAISE NOTICE 'archived %,%', total,
                         round(extract(epoch FROM clock_timestamp() - t0) * 1000);
                 END \$\$" 2>&1 | sed -n "s/.*archived \([0-9]*\),\([0-9]*\).*/$(( $(date +%s) - start )),\1,\2/p" >> "$out/archive.csv"
    done
) &
children+=($!)

echo "t,pid,kind,rss_kb,pss_kb,anon_kb" > "$out/memory.csv"
echo "t,relation,kind,bytes,live,dead,autovacuums,dead_pct,free_pct,leaf_density" > "$out/tables.csv"
echo "t,tasks_done,steps_done,task_p50_ms,task_p90_ms,task_p99_ms,claims,claim_p50_us,claim_p90_us,claim_p99_us,unfinished" > "$out/latency.csv"

take_sample() {
    local t=$1 since=$2
    psql -F ' ' -c "SELECT pid, CASE WHEN backend_type LIKE 'tasker%' THEN replace(backend_type, ' ', '_')
                                     ELSE replace(application_name, ' ', '_') END
                      FROM pg_stat_activity
                     WHERE backend_type LIKE 'tasker%' OR application_name IN ('soak-worker', 'soak-creator')" |
    while read -r pid kind; do
        [ -r "/proc/$pid/smaps_rollup" ] || continue
        awk -v t="$t" -v pid="$pid" -v kind="$kind" '
            /^Rss:/ { rss = $2 } /^Pss:/ { pss = $2 } /^Anonymous:/ { anon = $2 }
            END { print t "," pid "," kind "," rss "," pss "," anon }' "/proc/$pid/smaps_rollup" >> "$out/memory.csv"
    done
    local stat_table="NULL::numeric, NULL::numeric" stat_index="NULL::numeric"
    if [ "$stattuple" = 1 ]; then
        stat_table="s.dead_tuple_percent, s.free_percent"
        stat_index="i.avg_leaf_density"
    fi
    psql -F ',' -c "
        SELECT $t, c.relname, 'table', pg_relation_size(c.oid), st.n_live_tup, st.n_dead_tup,
               st.autovacuum_count, $stat_table, NULL
          FROM pg_class c JOIN pg_stat_user_tables st ON st.relid = c.oid
          $( [ "$stattuple" = 1 ] && echo ", LATERAL pgstattuple(c.oid) s" )
         WHERE c.relnamespace = 'tasker'::regnamespace AND c.relkind = 'r'
        UNION ALL
        SELECT $t, c.relname, 'index', pg_relation_size(c.oid), NULL, NULL, NULL, NULL, NULL, $stat_index
          FROM pg_class c JOIN pg_index x ON x.indexrelid = c.oid
          $( [ "$stattuple" = 1 ] && echo ", LATERAL pgstatindex(c.oid) i" )
         WHERE c.relnamespace = 'tasker'::regnamespace AND c.relkind = 'i'
         ORDER BY 2" >> "$out/tables.csv"
    psql -F ',' -c "
        WITH done AS (
            SELECT extract(epoch FROM completed_at - created_at) * 1000 AS ms FROM tasker.tasks
             WHERE current_state IN ('complete', 'error')
               AND completed_at > to_timestamp($since) AND completed_at <= to_timestamp($start + $t)
        ), claims AS (
            SELECT (results ->> 'claim_us')::bigint AS us FROM tasker.workflow_steps
             WHERE handler IS NULL AND current_state = 'complete'
               AND completed_at > to_timestamp($since) AND completed_at <= to_timestamp($start + $t)
        ), steps AS (
            SELECT count(*) AS n FROM tasker.workflow_steps
             WHERE completed_at > to_timestamp($since) AND completed_at <= to_timestamp($start + $t)
        )
        SELECT $t, (SELECT count(*) FROM done), (SELECT n FROM steps),
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
               (SELECT count(*) FROM claims),
               (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY us) FROM claims),
               (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY us) FROM claims),
               (SELECT percentile_disc(0.99) WITHIN GROUP (ORDER BY us) FROM claims),
               (SELECT pending_tasks + in_progress_tasks FROM tasker.system_health_counts())
          FROM done" >> "$out/latency.csv"
}

since=$start
next=$((start + sample))
while :; do
    now=$(date +%s)
    if [ "$now" -ge "$next" ]; then
        take_sample $((now - start)) "$since"
        since=$now
        next=$((next + sample))
    fi
    [ "$now" -ge $((start + seconds)) ] && break
    sleep 1
done
for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
children=()

# ---- summary --------------------------------------------------------------
cores=$(nproc)
version=$("$bindir/postgres" -V | awk '{ print $3 }')
echo "## Soak: ${minutes} min at ${rate} tasks/s, $workers external workers ($cores cores, PostgreSQL $version)"
echo
echo "Retention: archive_tasks('$retention', 1000, include_errors) every ${archive_every} s; samples every ${sample} s; autovacuum at its defaults."
echo
awk -F, 'NR > 1 { n++; tasks += $2; steps += $3 } END {
    printf "Throughput: %d tasks and %d steps finished, %.1f tasks/s, %.1f steps/s.\n\n", tasks, steps, tasks / (n * '"$sample"'), steps / (n * '"$sample"') }' "$out/latency.csv"

echo "### Latency per window"
echo
echo "| t (s) | tasks | create→complete p50 / p90 / p99 (ms) | claims | claim p50 / p90 / p99 (µs) | unfinished |"
echo "|---:|---:|---|---:|---|---:|"
awk -F, 'NR > 1 { printf "| %s | %s | %s / %s / %s | %s | %s / %s / %s | %s |\n", $1, $2, $4, $5, $6, $7, $8, $9, $10, $11 }' "$out/latency.csv"
echo

echo "### Memory of each process (kB): first sample → last sample (max)"
echo
echo "| process | pid | samples | RSS | PSS | private anonymous |"
echo "|---|---:|---:|---|---|---|"
awk -F, 'NR > 1 {
    k = $3 " " $2
    if (!(k in first)) { order[++n] = k; first[k] = NR; frss[k] = $4; fpss[k] = $5; fanon[k] = $6 }
    cnt[k]++; lrss[k] = $4; lpss[k] = $5; lanon[k] = $6
    if ($4 > mrss[k]) mrss[k] = $4; if ($5 > mpss[k]) mpss[k] = $5; if ($6 > manon[k]) manon[k] = $6
} END {
    for (i = 1; i <= n; i++) { k = order[i]; split(k, p, " ")
        printf "| %s | %s | %d | %s → %s (%s) | %s → %s (%s) | %s → %s (%s) |\n", p[1], p[2], cnt[k],
               frss[k], lrss[k], mrss[k], fpss[k], lpss[k], mpss[k], fanon[k], lanon[k], manon[k] }
}' "$out/memory.csv"
echo

echo "### Tables and indexes: first sample → last sample (max)"
echo
echo "| relation | size (kB) | dead tuples | autovacuums | dead % / free % (pgstattuple) or leaf density % |"
echo "|---|---|---|---:|---|"
awk -F, 'NR > 1 {
    k = $2
    if (!(k in first)) { order[++n] = k; first[k] = 1; kind[k] = $3; fsize[k] = $4; fdead[k] = $6; fdp[k] = $8; ffp[k] = $9; fld[k] = $10 }
    lsize[k] = $4; ldead[k] = $6; lav[k] = $7; ldp[k] = $8; lfp[k] = $9; lld[k] = $10
    if ($4 + 0 > msize[k]) msize[k] = $4 + 0; if ($6 + 0 > mdead[k]) mdead[k] = $6 + 0
} END {
    for (i = 1; i <= n; i++) { k = order[i]
        if (kind[k] == "table")
            printf "| %s | %d → %d (%d) | %s → %s (%d) | %s | %s / %s → %s / %s |\n", k, fsize[k] / 1024, lsize[k] / 1024,
                   msize[k] / 1024, fdead[k], ldead[k], mdead[k], lav[k], fdp[k], ffp[k], ldp[k], lfp[k]
        else
            printf "| %s | %d → %d (%d) | | | %s → %s |\n", k, fsize[k] / 1024, lsize[k] / 1024, msize[k] / 1024, fld[k], lld[k]
    }
}' "$out/tables.csv"
echo

echo "### Retention runs"
echo
awk -F, 'NR > 1 { n++; d += $2; if ($3 > m) m = $3; ms += $3 } END {
    printf "%d runs, %d tasks deleted, %.0f ms per run on average, %d ms at most.\n", n, d, (n ? ms / n : 0), m }' "$out/archive.csv"
echo
errors=$(grep -cE "ERROR|FATAL|PANIC" "$work/server.log" || true)
echo "Server log: $errors ERROR/FATAL/PANIC lines ($(grep -c 'automatic vacuum of table' "$work/server.log" || true) autovacuum runs logged)."
echo
echo "(CSV files: $out)"
