#!/usr/bin/env bash
# `make demo`: the offline analyzer end to end on the shipped example shop (no cluster needed).
# 1. the reachability matrix, 2. the baseline suite checked against the policies, 3. what a policy edit
# changes. Usage: demo.sh [VENV_BIN]
set -uo pipefail
BIN=${1:-.venv/bin}
EX=$(dirname "$0")
ND="$BIN/netpol-drift"
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; }

step "Who can reach whom (port 8080, 9000 and 5432)" netpol-drift matrix --manifests "$EX/shop" --port 8080/TCP --port 9000/TCP --port 5432/TCP
"$ND" matrix --manifests "$EX/shop" --port 8080/TCP --port 9000/TCP --port 5432/TCP || exit 1

step "Full connection sets, as scripts consume them" netpol-drift matrix --manifests "$EX/shop" --format tsv
"$ND" matrix --manifests "$EX/shop" --format tsv || exit 1

step "The baseline suite against the policies" netpol-drift check --manifests "$EX/shop" --suite "$EX/shop/suite.yaml"
"$ND" check --manifests "$EX/shop" --suite "$EX/shop/suite.yaml" || exit 1

step "What a policy edit changes" netpol-drift diff --before "$EX/shop" --after "$EX/shop-changed"
"$ND" diff --before "$EX/shop" --after "$EX/shop-changed" || exit 1

step "The same suite after the edit (exit 1: a case no longer holds)" netpol-drift check --manifests "$EX/shop-changed" --suite "$EX/shop/suite.yaml"
"$ND" check --manifests "$EX/shop-changed" --suite "$EX/shop/suite.yaml"
rc=$?
[[ $rc -eq 1 ]] || { echo "expected exit 1 from the broken policies, got $rc" >&2; exit 1; }
printf '\n\033[1mdemo finished\033[0m: the typo in shop-changed/policies.yaml is caught by check and explained by diff.\n'
