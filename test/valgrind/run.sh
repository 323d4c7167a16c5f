#!/usr/bin/env bash
# test/valgrind/run.sh — a DAG workload run by the background workers under
# valgrind (memcheck), every PostgreSQL process traced (not in CI: minutes).
#
# Run as root after `make install`.  It starts a throwaway server under
# valgrind with tasker preloaded, 3 executors and a 50 ms commit window (so
# groups hold siblings, settle fan-ins and record failures mid-group), runs
# VG_TASKS (60) tasks of a fan-in template whose step b fails once in a
# third of the tasks, checks that every task completes and that
# tasker.check_invariants() is empty, stops the server, and reports every
# valgrind error except PostgreSQL's own known false positives (what its
# src/tools/valgrind.supp suppresses, which Debian does not ship: padding
# bytes written with WAL pages and the relcache init file, and the regex
# library's overlapping memcpy).  Exit status 1 when anything else shows up.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)"; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
tasks=${VG_TASKS:-60}
bindir=$(pg_config --bindir)
work=$(mktemp -d /tmp/tasker-valgrind.XXXXXX)
chown postgres "$work"
port=54390
while [ -e "/tmp/.s.PGSQL.$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
as_pg() { runuser -u postgres -- "$@"; }
psql() { as_pg "$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d postgres "$@"; }

as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'tasker'
tasker.max_executors = 3
tasker.executor_commit_window = 50ms
tasker.backoff_base = 0
max_worker_processes = 16
CONF
as_pg valgrind --quiet --trace-children=yes --num-callers=30 --error-limit=no \
    --log-file="$work/valgrind.%p.log" "$bindir/postgres" -D "$work/data" > "$work/server.log" 2>&1 &
for _ in $(seq 180); do "$bindir/pg_isready" -h "$work" -p "$port" -q && break; sleep 1; done

psql -c "CREATE EXTENSION tasker"
psql -c 'CREATE FUNCTION public.work(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF input ->> '\''step_name'\'' = '\''b'\'' AND (input ->> '\''attempt'\'')::int = 1
       AND (input ->> '\''task_id'\'')::int % 3 = 0 THEN
        RAISE EXCEPTION '\''flaky'\'';
    END IF;
    RETURN jsonb_build_object('\''step'\'', input ->> '\''step_name'\'');
END $$'
psql -c "SELECT tasker.register_template(jsonb_build_object('namespace', 'vg', 'name', 'fan', 'version', '1.0.0',
  'steps', jsonb_build_array(
    jsonb_build_object('name', 'a', 'handler', 'public.work(jsonb)'),
    jsonb_build_object('name', 'b', 'handler', 'public.work(jsonb)'),
    jsonb_build_object('name', 'c', 'handler', 'public.work(jsonb)', 'depends_on', jsonb_build_array('a', 'b')),
    jsonb_build_object('name', 'd', 'handler', 'public.work(jsonb)', 'depends_on', jsonb_build_array('c')))))" >/dev/null
# two one-step tasks whose handlers deadlock with each other (as in
# test/t/057_handler_deadlock.pl): the victim reruns its handler
psql -c 'CREATE FUNCTION public.cross_lock(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    mine integer := CASE input ->> '\''step_name'\'' WHEN '\''left'\'' THEN 1 ELSE 2 END;
    deadline timestamptz := clock_timestamp() + interval '\''20 seconds'\'';
BEGIN
    PERFORM pg_advisory_xact_lock(4242, mine);
    WHILE clock_timestamp() < deadline
          AND NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = '\''advisory'\'' AND classid = 4242
                                                   AND objid = 3 - mine AND granted)
          AND NOT EXISTS (SELECT 1 FROM tasker.workflow_steps
                           WHERE name IN ('\''left'\'', '\''right'\'') AND name <> input ->> '\''step_name'\''
                             AND current_state = '\''complete'\'') LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
    PERFORM pg_advisory_xact_lock(4242, 3 - mine);
    RETURN '\''{}'\'';
END $$'
for side in left right; do
    psql -c "SELECT tasker.register_template(jsonb_build_object('namespace', 'vg', 'name', '$side', 'version', '1.0.0',
      'steps', jsonb_build_array(jsonb_build_object('name', '$side', 'handler', 'public.cross_lock(jsonb)'))))" >/dev/null
done
psql -c "SELECT tasker.create_task('vg', 'left'), tasker.create_task('vg', 'right')" >/dev/null
psql -c "SELECT count(tasker.create_task('vg', 'fan')) FROM generate_series(1, $tasks)" >/dev/null
left=$tasks
for _ in $(seq 300); do
    left=$(psql -c "SELECT count(*) FROM tasker.tasks WHERE current_state <> 'complete'")
    [ "$left" = 0 ] && break
    sleep 2
done
violations=$(psql -c "SELECT count(*) FROM tasker.check_invariants()")
as_pg "$bindir/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null || true
sleep 2

# every error report: its first line and its stack, one block per error
unexpected=$(cat "$work"/valgrind.*.log | awk '
    /^==[0-9]+== [A-Z]/ && !/Command:|Parent PID:|ERROR SUMMARY|Memcheck|Copyright|Using Valgrind|HEAP SUMMARY|in use at exit|total heap|LEAK SUMMARY|definitely|indirectly|possibly|still reachable|suppressed|Rerun with|For lists/ {
        head = $0; sub(/^==[0-9]+== /, "", head); next_is_stack = 1; next }
    next_is_stack && /^==[0-9]+==    (at|by) / { stack = stack "\n" $0; next }
    next_is_stack { if (head != "") print head stack "\n"; head = ""; stack = ""; next_is_stack = 0 }' |
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       /^Syscall param (pwrite64|write)\(buf\) points to uninitialised byte/ { next }
       /^Source and destination overlap in memcpy_chk/ && /RE_compile_and_cache/ { next }
       { print }')
reruns=$(grep -c 'deadlocked; running its handler again' "$work/server.log" || true)
echo "tasks unfinished: $left; invariant violations: $violations; deadlock reruns: $reruns; valgrind logs: $(ls "$work"/valgrind.*.log | wc -l)"
[ "$reruns" -gt 0 ] || echo "warning: no handler deadlocked, so the rerun path did not run under valgrind"
if [ -n "$unexpected" ] || [ "$left" != 0 ] || [ "$violations" != 0 ]; then
    printf '%s\n' "$unexpected" | head -200
    echo "valgrind: FAILED (logs in $work)"
    exit 1
fi
echo "valgrind: no error beyond PostgreSQL's known false positives"
rm -rf "$work"
