#!/usr/bin/env bash
# demo/run.sh — the main job, on a fresh Debian 12 machine: installs what is
# missing, builds and installs tasker, starts a throwaway PostgreSQL (its own
# data directory and port, tasker preloaded), runs a few hundred e-commerce
# orders through SQL-handler steps, shows progress, then the summary, one
# task's DAG and history, and stops the server.
#
#   bash demo/run.sh            # run and clean up
#   bash demo/run.sh --keep     # leave the server running; prints the psql command
#   TASKS=1000 bash demo/run.sh # more orders
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
keep=0
[ "${1:-}" = "--keep" ] && keep=1
tasks=${TASKS:-300}

# 1. what a fresh machine lacks
export DEBIAN_FRONTEND=noninteractive
need=()
for p in postgresql-15 postgresql-server-dev-15 libyaml-dev make gcc; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${need[*]} — run as root or: sudo apt-get install ${need[*]}" >&2
        exit 1
    fi
    echo "installing ${need[*]} ..."
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
bindir=/usr/lib/postgresql/15/bin
export PATH=$bindir:$PATH

# 2. build and install
echo "building tasker ..."
make -s >/dev/null
if [ "$(id -u)" = 0 ]; then make -s install >/dev/null; else sudo make -s install >/dev/null; fi

# 3. a throwaway server (initdb refuses root: run it as postgres then)
dir=$(mktemp -d /tmp/tasker-demo.XXXXXX)
if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"; chmod 755 "$dir"
    as_pg() { runuser -u postgres -- "$@"; }
    dbuser=postgres
else
    as_pg() { "$@"; }
    dbuser=$(id -un)
fi
port=$(( 55000 + RANDOM % 5000 ))
as_pg initdb -D "$dir/data" -A trust -U "$dbuser" >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'tasker'
max_worker_processes = 32
tasker.max_executors = 8
tasker.executor_batch_size = 8
tasker.backoff_base = 0.2
tasker.backoff_jitter = 0
CONF
as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
stop_server() { [ $keep = 1 ] || { as_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1; rm -rf "$dir"; }; }
trap stop_server EXIT
psql_cmd=(psql -X -q -h "$dir" -p "$port" -U "$dbuser" -d postgres -v ON_ERROR_STOP=1)
sql() { as_pg "${psql_cmd[@]}" "$@"; }

echo "PostgreSQL 15 on port $port (data in $dir), tasker preloaded"
sql -c "CREATE EXTENSION tasker" -f "$top/demo/ecommerce.sql" >/dev/null
echo "registered template shop.order_fulfillment 1.0.0:"
sql -At -c "SELECT tasker.template_graph('shop', 'order_fulfillment')" | grep -v classDef | sed 's/^/    /'

# 4. the orders, and one task per order
start=$(date +%s.%N)
sql -c "
INSERT INTO shop.orders (order_id, customer)
SELECT i, 'customer-' || i FROM generate_series(1, $tasks) i;
INSERT INTO shop.order_lines
SELECT i, 'SKU-' || (1 + (i * 7 + k) % 20), 1 + (i + k) % 3
  FROM generate_series(1, $tasks) i, generate_series(0, 1 + i % 2) k;
SELECT count(tasker.create_task('shop', 'order_fulfillment', context => jsonb_build_object('order_id', i),
                                initiator => 'demo', reason => 'checkout'))
  FROM generate_series(1, $tasks) i;" >/dev/null
echo "created $tasks tasks ($((tasks * 5)) steps); the background workers run them:"

# 5. progress
while :; do
    line=$(sql -At -F ' ' -c "
        SELECT count(*) FILTER (WHERE current_state IN ('complete', 'error')),
               (SELECT count(*) FROM tasker.workflow_steps WHERE current_state = 'complete'),
               (SELECT count(*) FROM tasker.workflow_step_transitions WHERE to_state = 'waiting_for_retry'),
               (SELECT count(*) FROM tasker.workers WHERE kind = 'executor')
          FROM tasker.tasks")
    read -r done steps retried executors <<<"$line"
    now=$(date +%s.%N)
    rate=$(awk -v s="$steps" -v a="$start" -v b="$now" 'BEGIN { printf "%.0f", s / (b - a) }')
    printf '\r  tasks done %4d / %d | steps complete %5d | %5s steps/s | failures retried %3d | executors %2d ' \
        "$done" "$tasks" "$steps" "$rate" "$retried" "$executors"
    [ "$done" -ge "$tasks" ] && break
    if awk -v a="$start" -v b="$now" 'BEGIN { exit !(b - a > 55) }'; then
        echo; echo "demo: not finished after 55 s (see $dir/server.log)" >&2; exit 1
    fi
    sleep 0.3
done
echo
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "all $tasks tasks finished in $elapsed s"

# 6. what happened
sql <<'SQL'
\echo
\echo Tasks and steps per state:
SELECT 'task' AS kind, current_state, count(*) FROM tasker.tasks GROUP BY current_state
UNION ALL
SELECT 'step', current_state, count(*) FROM tasker.workflow_steps GROUP BY current_state
ORDER BY 1 DESC, 2;
\echo The shop after the run (every order shipped once, charged once, notified once):
SELECT (SELECT count(*) FROM shop.orders WHERE status = 'shipped') AS orders_shipped,
       (SELECT count(*) FROM shop.payments) AS payments,
       (SELECT count(*) FROM shop.shipments) AS shipments,
       (SELECT count(*) FROM shop.notifications) AS notifications,
       (SELECT sum(reserved) FROM shop.products) AS stock_still_reserved;
SELECT task_id AS retried_task FROM tasker.workflow_steps
 WHERE name = 'charge_payment' AND attempts > 1 ORDER BY task_id LIMIT 1 \gset
\echo Task :retried_task, whose payment failed once and was retried — its DAG (Mermaid):
SELECT line AS "DAG" FROM regexp_split_to_table(tasker.task_graph(:retried_task), E'\n') line
 WHERE line NOT LIKE '%classDef%' AND line <> '';
\echo Its steps:
SELECT name, current_state, attempts, results FROM tasker.task_steps(:retried_task);
\echo Its transition history:
SELECT step_name, sort_key AS n, from_state, to_state,
       coalesce(metadata->'error'->>'message', '') AS error
  FROM tasker.step_transitions(:retried_task);
SQL
if command -v dot >/dev/null 2>&1; then
    id=$(sql -At -c "SELECT task_id FROM tasker.workflow_steps WHERE name = 'charge_payment' AND attempts > 1 ORDER BY task_id LIMIT 1")
    sql -At -c "SELECT tasker.task_graph($id, 'dot')" | dot -Tsvg -o "$top/demo/task.svg" && echo "SVG of that DAG: $top/demo/task.svg"
fi
# the run is checked, not only shown: every order shipped, charged and
# notified exactly once, every task complete
verdict=$(sql -At -c "
    SELECT CASE WHEN (SELECT count(*) FROM tasker.tasks WHERE current_state = 'complete') = $tasks
                 AND (SELECT count(*) FROM shop.orders WHERE status = 'shipped') = $tasks
                 AND (SELECT count(*) FROM shop.payments) = $tasks
                 AND (SELECT count(*) FROM shop.shipments) = $tasks
                 AND (SELECT count(*) FROM shop.notifications) = $tasks
                 AND (SELECT sum(reserved) FROM shop.products) = 0
                 AND (SELECT count(*) FROM tasker.workflow_steps WHERE name = 'charge_payment' AND attempts = 2)
                     = $tasks / 10
                THEN 'ok' ELSE 'MISMATCH' END")
echo "demo: $verdict ($tasks orders: each shipped, charged and notified once; $((tasks / 10)) payments retried once)"
if [ $keep = 1 ]; then
    echo "server left running; connect with:"
    echo "  ${psql_cmd[*]}" | sed 's/ -v ON_ERROR_STOP=1//'
    echo "stop it with: $( [ "$(id -u)" = 0 ] && echo 'runuser -u postgres -- ')$bindir/pg_ctl -D $dir/data stop"
fi
[ "$verdict" = ok ]
