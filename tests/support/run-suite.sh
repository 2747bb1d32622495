#!/usr/bin/env bash
# The suite `make test` runs: first every test not marked e2e (in process: unit, flows, fuzz) on
# $TEST_WORKERS pytest-xdist workers, each with its own PostgreSQL; then the e2e tests, which start real
# servers and measure time, one at a time. Given pytest arguments, it runs one plain pytest with them.
# Exit code 5 (pytest collected nothing) fails the suite like any other failure.
#
#   tests/support/run-suite.sh PYTHON [PYTEST ARGS...]
set -u
python=$1
shift

pytest() {
    "$python" -m pytest "$@"
    local status=$?
    if [ "$status" -eq 5 ]; then
        echo "make test: pytest collected no tests (pytest $*)" >&2
    fi
    return "$status"
}

if [ $# -gt 0 ]; then
    pytest "$@"
    exit $?
fi
pytest -m "not e2e" -n "${TEST_WORKERS:-2}"
in_process=$?
pytest -m e2e
e2e=$?
if [ "$in_process" -ne 0 ]; then
    exit "$in_process"
fi
exit "$e2e"
