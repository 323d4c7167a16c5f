#!/usr/bin/env bash
# test/bench/claims/run.sh — steps per second for claim + complete by
# external workers, against PostgreSQL's own ceiling measured in the same
# run on the same machine (pgbench's simple-update, -N).
#
# Run as root from anywhere: it builds and installs tasker (unless
# BENCH_NO_INSTALL=1), starts a throwaway PostgreSQL as user postgres on a
# free port with tasker preloaded and fsync on, and for 1, 4 and 8 clients
# measures
#   - simple-update: pgbench -N transactions per second;
#   - batch 1:  claim_steps(max 1) in one transaction, complete_step in the next;
#   - batch 10: claim_steps(max 10) in one transaction, complete_steps in the next;
#   - the floor of that protocol on a bare table: claim 1 or 10 rows with
#     UPDATE ... FOR UPDATE SKIP LOCKED setting a lease (through a partial
#     index of unleased rows) in one transaction, delete them in the next —
#     what any claim/complete queue costs here before it records anything;
# each BENCH_REPEAT times (default 3) for BENCH_SECONDS (default 10), and
# prints the medians, steps per second, and the cost of one claim + complete
# round trip in simple-update transactions (target for batch 10: <= 2), and
# tasker's rate as a share of the floor's.
#
# The queue holds tasks of BENCH_STEPS_PER_TASK independent external steps
# (default 1: every step is a whole task, so each claim also starts a task
# and each completion also finalizes one).  Between runs the finished tasks
# are deleted, the queue is topped up and vacuumed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
seconds=${BENCH_SECONDS:-10}
repeat=${BENCH_REPEAT:-3}
clients_list=${BENCH_CLIENTS:-"1 4 8"}
steps_per_task=${BENCH_STEPS_PER_TASK:-1}
scale=${BENCH_SCALE:-10}

[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)"; exit 1; }
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    make -s -C "$top" >/dev/null && make -s -C "$top" install >/dev/null
fi
bindir=$(pg_config --bindir)
as_pg() { runuser -u postgres -- "$@"; }

work=$(mktemp -d /tmp/tasker-bench.XXXXXX)
chown postgres "$work"
port=54330
while [ -e "/tmp/.s.PGSQL.$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
done
cleanup() {
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
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql() { as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
pgbench() { as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$bindir/pgbench" "$@"; }

psql -c "CREATE EXTENSION tasker"
psql -c "SELECT tasker.register_template(jsonb_build_object(
           'namespace', 'bench', 'name', 'steps', 'version', '1.0.0',
           'steps', (SELECT jsonb_agg(jsonb_build_object('name', 's' || i, 'queue', 'bench'))
                       FROM generate_series(1, $steps_per_task) i)))" >/dev/null
pgbench -i -q -s "$scale" >/dev/null 2>&1

cat > "$work/batch1.sql" <<'SQL'
SELECT coalesce(max(step_id), 0) AS sid, coalesce(max(attempt), 0) AS att
  FROM tasker.claim_steps('bench', 'w' || :client_id, 1, '5 minutes') \gset
SELECT CASE WHEN :sid = 0 THEN false ELSE tasker.complete_step(:sid, :att) END;
SQL
cat > "$work/batch10.sql" <<'SQL'
SELECT count(*) AS n, coalesce(string_agg(step_id::text, ','), '0') AS ids,
       coalesce(string_agg(attempt::text, ','), '0') AS atts
  FROM tasker.claim_steps('bench', 'w' || :client_id, 10, '5 minutes') \gset
SELECT CASE WHEN :n = 0 THEN 0
            ELSE tasker.complete_steps(ARRAY[:ids]::bigint[], ARRAY[:atts]::integer[]) END;
SQL
cat > "$work/floor1.sql" <<'SQL'
WITH c AS (UPDATE floor_jobs SET leased_until = now() + interval '5 minutes'
            WHERE id IN (SELECT id FROM floor_jobs WHERE leased_until IS NULL
                          ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id)
SELECT coalesce(string_agg(id::text, ','), '0') AS ids FROM c \gset
DELETE FROM floor_jobs WHERE id IN (:ids);
SQL
sed 's/LIMIT 1 FOR/LIMIT 10 FOR/' "$work/floor1.sql" > "$work/floor10.sql"
chown postgres "$work"/*.sql
psql -c "CREATE TABLE floor_jobs (id bigserial PRIMARY KEY, payload jsonb NOT NULL DEFAULT '{}',
                                  leased_until timestamptz)"
psql -c "CREATE INDEX floor_jobs_ready_idx ON floor_jobs (id) WHERE leased_until IS NULL"

# refill: delete finished tasks, top the queue up to $1 ready steps, vacuum
refill() {
    local want=$1 have
    psql -c "DELETE FROM tasker.tasks WHERE current_state = 'complete'"
    have=$(psql -c "SELECT count(*) FROM tasker.workflow_steps WHERE queue = 'bench' AND current_state = 'pending'")
    if [ "$have" -lt "$want" ]; then
        psql -c "SELECT count(tasker.create_task('bench', 'steps'))
                   FROM generate_series(1, ceil(($want - $have) / $steps_per_task::numeric)::integer)" >/dev/null
    fi
    psql -c "VACUUM ANALYZE" 2>/dev/null
    psql -c "CHECKPOINT"
}
# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# tps of one pgbench run: clients, then pgbench arguments
tps() {
    local c=$1 out; shift
    out=$(pgbench -n -c "$c" -j "$c" -T "$seconds" "$@" 2>&1)
    grep -qiE 'error|abort' <<<"$out" && { echo "warning: pgbench reported errors:" >&2; grep -iE 'error|abort' <<<"$out" | head -3 >&2; }
    awk '/^tps = / { print $3; exit }' <<<"$out"
}
done_steps() { psql -c "SELECT count(*) FROM tasker.workflow_steps WHERE queue = 'bench' AND current_state = 'complete'"; }
# the floor's queue: emptied and refilled with $1 jobs, vacuumed
floor_refill() {
    psql -c "TRUNCATE floor_jobs"
    psql -c "INSERT INTO floor_jobs (payload) SELECT '{}' FROM generate_series(1, $1)"
    psql -c "VACUUM ANALYZE floor_jobs"
    psql -c "CHECKPOINT"
}

echo "tasker claim + complete benchmark: $(nproc) cores, PostgreSQL $("$bindir/postgres" -V | awk '{ print $3 }'), fsync on,"
echo "$steps_per_task step(s) per task, ${seconds}s per run, median of $repeat runs"
printf '%-8s %-14s %12s %12s %14s %10s\n' clients workload "tps" "steps/s" "cost (simple-update tx)" "of floor"
for c in $clients_list; do
    runs=()
    for r in $(seq "$repeat"); do
        psql -c "CHECKPOINT"
        runs+=("$(tps "$c" -N)")
    done
    simple=$(median "${runs[@]}")
    printf '%-8s %-14s %12.0f %12s %14s\n' "$c" simple-update "$simple" - 1
    declare -A floor_rate=()
    for b in 1 10; do
        runs=()
        for r in $(seq "$repeat"); do
            floor_refill $(( (b == 1 ? 5000 : 30000) * seconds + 5000 ))
            runs+=("$(tps "$c" -f "$work/floor$b.sql")")
            [ "$(psql -c "SELECT count(*) FROM floor_jobs WHERE leased_until IS NULL")" -gt 0 ] ||
                echo "warning: the floor's queue ran dry during a run: raise its refill" >&2
        done
        t=$(median "${runs[@]}")
        floor_rate[$b]=$(awk -v t="$t" -v b="$b" 'BEGIN { printf "%.1f", t * b }')
        cost=$(awk -v t="$t" -v q="$simple" 'BEGIN { printf "%.2f", q / t }')
        printf '%-8s %-14s %12.0f %12.0f %14s\n' "$c" "floor $b" "$t" "${floor_rate[$b]}" "$cost"
    done
    for b in 1 10; do
        runs=(); steps=()
        for r in $(seq "$repeat"); do
            # enough ready steps that the queue never runs dry during a run
            refill $(( (b == 1 ? 2500 : 9000) * seconds + 5000 ))
            before=$(done_steps)
            t=$(tps "$c" -f "$work/batch$b.sql")
            after=$(done_steps)
            [ "$(psql -c "SELECT count(*) FROM tasker.workflow_steps WHERE queue = 'bench' AND current_state = 'pending'")" -gt 0 ] ||
                echo "warning: the queue ran dry during a run: raise the refill" >&2
            runs+=("$t")
            # steps per second = executions per second x steps completed per execution
            steps+=("$(awk -v t="$t" -v d=$((after - before)) -v s="$seconds" \
                        'BEGIN { n = t * s; printf "%.1f", (n > 0 ? t * d / n : 0) }')")
        done
        t=$(median "${runs[@]}")
        s=$(median "${steps[@]}")
        cost=$(awk -v t="$t" -v q="$simple" 'BEGIN { printf "%.2f", q / t }')
        share=$(awk -v s="$s" -v f="${floor_rate[$b]}" 'BEGIN { printf "%.2f", s / f }')
        printf '%-8s %-14s %12.0f %12.0f %14s %10s\n' "$c" "batch $b" "$t" "$s" "$cost" "$share"
    done
    unset floor_rate
done
echo "(cost: one claim + complete round trip, in simple-update transactions of the same client count; target for batch 10: <= 2)"
echo "(floor: the same claim + complete protocol on a bare table; of floor: tasker's steps/s over the floor's jobs/s at the same batch)"
