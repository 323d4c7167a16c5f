#!/usr/bin/env bash
# run_tests.sh — builds and installs tasker, then runs every suite (pg_regress,
# isolation, TAP) against throwaway instances with tasker preloaded, and ends
# with one line "N passed, N failed".  Usage: test/run_tests.sh [regress|isolation|tap]...
#
# initdb refuses root, so as root the tree is copied to a scratch directory
# owned by postgres and the suites run there as postgres.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(regress isolation tap demo)

make -s >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
if [ "$(id -u)" = 0 ]; then
    make -s install >/dev/null || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }
    work=$(mktemp -d /tmp/tasker-tests.XXXXXX)
    tar --exclude=./.git -cf - . | tar -C "$work" -xf -
    chown -R postgres "$work"
    as_user() { runuser -u postgres -- "$@"; }
else
    work=$top
    as_user() { "$@"; }
fi
cd "$work"

passed=0
failed=0
count_regress() {   # counts "... ok" / "... FAILED" lines of pg_regress output
    local log=$1 ok bad
    ok=$(grep -Ec '\.\.\. ok|^ok ' "$log")
    bad=$(grep -Ec '\.\.\. FAILED|^not ok |\.\.\. failed' "$log")
    passed=$((passed + ok)); failed=$((failed + bad))
}

for suite in "${suites[@]}"; do
    case $suite in
    regress)
        as_user make -s check-regress ${REGRESS_TESTS:+REGRESS="$REGRESS_TESTS"} 2>&1 | tee /tmp/tasker-regress.log
        status=${PIPESTATUS[0]}
        before=$failed
        count_regress /tmp/tasker-regress.log
        [ "$status" -ne 0 ] && [ "$failed" -eq "$before" ] && failed=$((failed + 1))
        [ -f regression.diffs ] && { echo "=== regression.diffs"; cat regression.diffs; }
        ;;
    isolation)
        as_user make -s check-isolation ${ISOLATION_TESTS:+ISOLATION="$ISOLATION_TESTS"} 2>&1 | tee /tmp/tasker-isolation.log
        status=${PIPESTATUS[0]}
        before=$failed
        count_regress /tmp/tasker-isolation.log
        [ "$status" -ne 0 ] && [ "$failed" -eq "$before" ] && failed=$((failed + 1))
        [ -f test/isolation/output_iso/regression.diffs ] && {
            echo "=== isolation regression.diffs"; cat test/isolation/output_iso/regression.diffs; }
        ;;
    tap)
        for t in ${TAP_TESTS:-test/t/*.pl}; do
            [ -e "$t" ] || continue
            as_user make -s check-tap PROVE_TESTS="$t" > /tmp/tasker-tap.log 2>&1
            tail -40 /tmp/tasker-tap.log
            if grep -q '^Result: PASS' /tmp/tasker-tap.log; then
                passed=$((passed + 1)); echo "tap $t ... ok"
            else
                # the whole TAP output and the test's own logs: a flaky failure
                # must be diagnosable from this output alone
                failed=$((failed + 1)); echo "tap $t ... FAILED"
                echo "=== TAP output"; cat /tmp/tasker-tap.log
                for f in tmp_check/log/*; do [ -f "$f" ] && { echo "=== $f"; tail -80 "$f"; }; done
            fi
        done
        ;;
    demo)
        # the README's main job, end to end (it installs packages: root only)
        if [ "$(id -u)" != 0 ]; then
            echo "demo ... skipped (needs root)"
        elif (cd "$top" && bash demo/run.sh) 2>&1 | tee /tmp/tasker-demo.log | tail -5 &&
             grep -q '^demo: ok' /tmp/tasker-demo.log; then
            passed=$((passed + 1)); echo "demo ... ok"
        else
            failed=$((failed + 1)); echo "demo ... FAILED"; tail -40 /tmp/tasker-demo.log
        fi
        ;;
    *)
        echo "unknown suite $suite"; failed=$((failed + 1)) ;;
    esac
done

[ "$work" != "$top" ] && echo "(test tree and results: $work)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
