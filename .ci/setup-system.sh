#!/usr/bin/env bash
# The system packages the test suite needs besides Python: Debian's chromium and its chromedriver, which the
# browser test (tests/test_serve_browser.py) drives through selenium (nothing downloads a browser of its own).
# Run by `make test` (and so by .ci/run) before the tests.  Installs them with apt-get, only when absent,
# through sudo when not root; where that cannot be done it says so in one line and leaves the rest to run
# (the browser tests then fail, naming what is missing).  Never fails itself.
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
if have chromium && { have chromedriver || [ -x /usr/lib/chromium/chromedriver ]; }; then
    exit 0
fi
HOW="install chromium and chromedriver (Debian: apt-get install chromium chromium-driver), or the browser tests fail"
if ! have apt-get; then
    echo "setup: chromium or chromedriver is missing and there is no apt-get here; $HOW" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! have sudo; then
        echo "setup: chromium or chromedriver is missing, and installing them needs root (there is no sudo); $HOW" >&2
        exit 0
    fi
    SUDO=(sudo)
    [ -t 0 ] || SUDO=(sudo -n)          # no terminal to ask for a password on: fail at once rather than hang
fi
echo "setup: installing chromium and chromium-driver for the browser tests (${SUDO[*]:-as root} apt-get)" >&2
if ! { "${SUDO[@]}" apt-get update -qq &&
       "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           chromium chromium-driver; } >&2; then
    echo "setup: apt-get could not install chromium and chromium-driver (see above); $HOW" >&2
fi
exit 0
