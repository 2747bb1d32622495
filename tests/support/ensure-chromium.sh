#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests (tests/e2e/test_admin_browser.py).
#
# Silent when it is there. Missing and root: installs Debian's `chromium` package. Missing and not
# root: says how to install it and exits 0 (the browser tests then skip). Playwright's own browser
# downloads are never used.
set -euo pipefail

[[ -x /usr/bin/chromium ]] && exit 0

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-chromium: /usr/bin/chromium not found; the browser tests will be skipped." >&2
    echo "ensure-chromium: install it with 'sudo apt-get install chromium', or rerun this script as root." >&2
    exit 0
fi

echo "ensure-chromium: installing Chromium (apt-get install chromium)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq -o Dpkg::Use-Pty=0 chromium </dev/null >/dev/null
