#!/usr/bin/env bash
# Runs network-config-analyzer 2.1.0 (installed on demand by install.sh, in its own cached venv) for the
# pod-level connectivity of a manifests directory, the output the differential test and the benchmark compare:
#   tests/nca/run.sh DIR [OUT]     -> OUT (default: stdout) gets `src => dst : conns` lines
# NCA prints warnings on stdout, so the result goes through -f into a file and only that file is shown.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 MANIFEST_DIR [OUT]" >&2; exit 2; }
NCA="$(bash "$(dirname "$0")/install.sh")"
OUT="${2:-}"
TMP=""
if [ -z "$OUT" ]; then TMP="$(mktemp)"; OUT="$TMP"; fi
"$NCA" --connectivity -r "$1" -o txt_no_fw_rules --output_endpoints pods -f "$OUT" >&2
if [ -n "$TMP" ]; then cat "$TMP"; echo; rm -f "$TMP"; fi
