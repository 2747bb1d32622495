#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries (initdb, pg_ctl) exist for the e2e tests.
#
# Looks in PATH, then /usr/lib/postgresql/*/bin. Silent when they are there.
# Missing and root: installs Debian's `postgresql` package. Missing and not
# root: says how to install it and exits 2. The tests start their own private
# server (tests/support/postgres.py); a cluster the package may auto-start is
# not used and does no harm.
set -euo pipefail

have_initdb() {
    command -v initdb >/dev/null 2>&1 && return 0
    local bin
    for bin in /usr/lib/postgresql/*/bin/initdb; do
        [[ -x "$bin" ]] && return 0
    done
    return 1
}

have_initdb && exit 0

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-postgres: PostgreSQL server binaries (initdb) not found." >&2
    echo "ensure-postgres: install them, e.g. 'sudo apt-get install postgresql', or rerun this script as root." >&2
    exit 2
fi

echo "ensure-postgres: installing PostgreSQL (apt-get install postgresql)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq -o Dpkg::Use-Pty=0 postgresql </dev/null >/dev/null

if ! have_initdb; then
    echo "ensure-postgres: postgresql installed, but initdb is still not found" >&2
    exit 1
fi
