#!/usr/bin/env bash
# Installs network-config-analyzer 2.1.0 (the independent engine of the differential test and the benchmark)
# into its OWN virtualenv outside the repo: it pins its own dependencies (networkx, lxml, PyYAML...) and must
# not share ours. Idempotent and cached: a second run only checks the stamp and prints the nca path.
# Override the location with NPD_TEST_NCA_HOME. Prints the path of the `nca` executable on stdout.
set -euo pipefail
NCA_VERSION=2.1.0
HOME_DIR="${NPD_TEST_NCA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/netpol-drift-nca}"
VENV="$HOME_DIR/venv-$NCA_VERSION"
STAMP="$VENV/.installed-$NCA_VERSION"
# Python 3.11 is what NCA 2.1.0's pins are known to install on; fall back to whatever python3 is.
PY="${NCA_PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -f "$STAMP" ]; then
    mkdir -p "$HOME_DIR"
    # A lock so that two concurrent test runs do not build the same venv at once.
    exec 9>"$HOME_DIR/.lock"
    flock 9
    if [ ! -f "$STAMP" ]; then
        rm -rf "$VENV"
        "$PY" -m venv "$VENV" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "network-config-analyzer==$NCA_VERSION" >&2
        "$VENV/bin/nca" --help >/dev/null
        touch "$STAMP"
    fi
fi
echo "$VENV/bin/nca"
