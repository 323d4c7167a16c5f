#!/usr/bin/env bash
# psql_worker.sh — an external tasker worker in bash and psql: claim a step,
# do the work, complete it (or fail it, retryably), poll when idle.
# Usage: psql_worker.sh QUEUE [WORKER] [IDLE_POLLS]; connection from PG* variables.
# Exits after IDLE_POLLS empty polls in a row (0, the default: never).
set -eu
queue=$1 worker=${2:-psql-$$} idle_polls=${3:-0} idle=0
sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -v queue="$queue" -v worker="$worker" "$@"; }
while [ "$idle_polls" -eq 0 ] || [ "$idle" -lt "$idle_polls" ]; do
    step='' attempt='' name='' flaky=''
    IFS='|' read -r step attempt name flaky < <(sql <<<"SELECT step_id, attempt, step_name,
        attempt = 1 AND (input #>> '{context,fail_first}') = 'true'
        FROM tasker.claim_steps(:'queue', :'worker', 1, '1 minute')") || true
    if [ -z "$step" ]; then idle=$((idle + 1)); sleep 0.2; continue; fi
    idle=0
    # The work goes here; it must be idempotent (delivery is at least once).
    if [ "$flaky" = t ]; then
        sql -v step="$step" -v attempt="$attempt" <<<"SELECT tasker.fail_step(:step, :attempt,
            jsonb_build_object('message', 'first attempts fail'), retryable => true, backoff_seconds => 0)" >/dev/null
    else
        sql -v step="$step" -v attempt="$attempt" -v name="$name" <<<"SELECT tasker.complete_step(:step, :attempt,
            jsonb_build_object('message', 'done by ' || :'worker', 'step', :'name'))" >/dev/null
    fi
done
