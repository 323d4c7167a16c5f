#!/usr/bin/env bash
# test/bench/security/run.sh — what the role checks cost on the hot path.
#
# Run as root: builds and installs tasker (unless BENCH_NO_INSTALL=1), starts a
# throwaway PostgreSQL as user postgres with tasker preloaded (fsync off), and
# measures the backend CPU time of one claim + complete and one claim + fail
# round trip (claim and report in two transactions), as a superuser (the
# checks pass at once) and as a role made with tasker.grant_worker (the
# checks look up its grants, and the step for complete / fail), each
# BENCH_REPEAT times (default 3) over BENCH_ROUNDS round trips (default
# 4000), alternated; prints the medians.  Then times 100,000 calls of the
# checks alone.  CPU time, not throughput: it is steadier on a busy machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
rounds=${BENCH_ROUNDS:-4000}
repeat=${BENCH_REPEAT:-3}

[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)"; exit 1; }
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    make -s -C "$top" >/dev/null && make -s -C "$top" install >/dev/null
fi
bindir=$(pg_config --bindir)
as_pg() { runuser -u postgres -- "$@"; }

work=$(mktemp -d /tmp/tasker-bench-security.XXXXXX)
chmod 777 "$work"
port=54340
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
fsync = off
synchronous_commit = off
shared_buffers = 256MB
autovacuum = off
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
psql() { as_pg "$bindir/psql" -h "$work" -p "$port" -U postgres -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

psql -c "CREATE EXTENSION tasker" -c "CREATE ROLE bench_worker LOGIN" \
     -c "SELECT tasker.grant_worker('bench_worker', 'bench')" \
     -c "SELECT tasker.register_template('{\"namespace\": \"bench\", \"name\": \"one\", \"version\": \"1.0.0\",
           \"steps\": [{\"name\": \"s\", \"queue\": \"bench\", \"max_attempts\": 1000000}]}')" >/dev/null

# one psql script per report: it records the backend's CPU ticks before and after
for report in complete fail; do
    {
        echo "SELECT pg_backend_pid() AS pid \\gset"
        echo "\\setenv PID :pid"
        echo "\\! awk '{print \$14 + \$15}' /proc/\$PID/stat > $work/cpu0"
        for _ in $(seq 1 "$rounds"); do
            echo "SELECT coalesce(max(step_id), 0) AS sid, coalesce(max(attempt), 0) AS att FROM tasker.claim_steps('bench', 'w1', 1, '5 minutes') \\gset"
            if [ $report = complete ]; then
                echo "SELECT tasker.complete_step(:sid, :att);"
            else
                echo "SELECT tasker.fail_step(:sid, :att, '{\"m\": \"x\"}', true, 0);"
            fi
        done
        echo "\\! awk '{print \$14 + \$15}' /proc/\$PID/stat > $work/cpu1"
    } > "$work/$report.sql"
done
chmod 644 "$work"/*.sql

ticks=$(getconf CLK_TCK)
declare -A results
for report in complete fail; do
    for r in $(seq 1 "$repeat"); do
        for user in postgres bench_worker; do
            psql -c "DELETE FROM tasker.tasks" -c "SELECT tasker.recount_states()" >/dev/null
            [ $report = complete ] && k=$((rounds + 100)) || k=500
            psql -c "SELECT count(tasker.create_task('bench', 'one')) FROM generate_series(1, $k)" \
                 -c "VACUUM ANALYZE" >/dev/null
            as_pg "$bindir/psql" -h "$work" -p "$port" -U $user -X -q -o /dev/null \
                -v ON_ERROR_STOP=1 -f "$work/$report.sql" postgres
            us=$(( ($(cat "$work/cpu1") - $(cat "$work/cpu0")) * 1000000 / ticks / rounds ))
            echo "claim + $report as $user, run $r: $us us backend CPU per round trip"
            results[$report.$user]+="$us "
        done
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n "$(( (repeat + 1) / 2 ))p"; }
echo "== medians"
for report in complete fail; do
    s=$(median "${results[$report.postgres]}"); w=$(median "${results[$report.bench_worker]}")
    echo "claim + $report: superuser $s us, worker role $w us (worker - superuser: $((w - s)) us)"
done

echo "== the checks alone (100,000 calls, less an empty loop)"
psql <<'SQL'
CREATE FUNCTION public.time_checks(n integer) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    step bigint := (SELECT min(workflow_step_id) FROM tasker.workflow_steps);
    t0 timestamptz;
    empty double precision;
BEGIN
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP PERFORM pg_catalog.abs(i); END LOOP;
    empty := extract(epoch FROM clock_timestamp() - t0);
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP PERFORM tasker._authorize('worker', 'bench', 'queue'); END LOOP;
    RETURN NEXT format('%s: _authorize (claim_steps) %s us', tasker._caller(),
        round(((extract(epoch FROM clock_timestamp() - t0) - empty) * 1e6 / n)::numeric, 1));
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP PERFORM tasker._authorize_step(step); END LOOP;
    RETURN NEXT format('%s: _authorize_step (complete_step, fail_step, extend_lease) %s us', tasker._caller(),
        round(((extract(epoch FROM clock_timestamp() - t0) - empty) * 1e6 / n)::numeric, 1));
END $$;
GRANT EXECUTE ON FUNCTION public.time_checks(integer) TO bench_worker;
SELECT public.time_checks(100000);
SET ROLE bench_worker;
SELECT public.time_checks(100000);
SQL
