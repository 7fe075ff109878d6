#!/usr/bin/env bash
# `make demo`: the example shop end to end.
# Part 1 (offline, no cluster needed): 1. the reachability matrix, 2. the baseline suite checked against the
# policies, 3. what a policy edit changes.
# Part 2 (live, needs root for the lab): the shop deployed in the lab, `run --once` with real probe pods into
# a temporary SQLite history, the same policy edit applied, a second run that reports the drift and its cause,
# then `history`. The lab is left as found: brought up only if it was down (and then taken down again), and
# the shop's namespaces are deleted either way. Usage: demo.sh [VENV_BIN]
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
printf '\n\033[1moffline part finished\033[0m: the typo in shop-changed/policies.yaml is caught by check and explained by diff.\n'

# ------------------------------------------------------------------------------------------------ live part
if [[ $(id -u) -ne 0 ]]; then
  printf '\n\033[1mlive part SKIPPED\033[0m: the lab (a real kube-apiserver + kube-router on network namespaces)\n'
  printf 'needs root. Run `sudo make demo` to see `netpol-drift run --once` probe the shop and report drift.\n'
  exit 0
fi
REPO=$(cd "$EX/../.." && pwd)
cd "$REPO" || exit 1
PYBIN="$BIN/python"
WORK=$(mktemp -d)
brought_up=0
cleanup() {
  "$PYBIN" -m tests.lab.demo_app delete >/dev/null 2>&1 || echo "demo: could not delete the shop's namespaces" >&2
  if [[ $brought_up -eq 1 ]]; then
    echo "(taking the lab down again: the demo brought it up)"
    make -s lab-down >/dev/null || echo "demo: make lab-down failed" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "The lab: a real kube-apiserver and kube-router enforcing policies on network namespaces" make lab-up
if "$PYBIN" -m tests.lab status >/dev/null 2>&1; then
  echo "(already running: the demo will leave it up)"
else
  brought_up=1
  make -s lab-up || exit 1
fi
"$PYBIN" -m tests.lab.demo_app delete >/dev/null || exit 1  # leftovers of an interrupted demo

step "Deploy the shop: namespaces, its Deployments and StatefulSet (real controllers make the pods), the Service, the policies" \
  python -m tests.lab.demo_app apply
"$PYBIN" -m tests.lab.demo_app apply || exit 1

# The monitor's own ServiceAccount (the RBAC of deploy/), never the lab's admin identity.
KC=$("$PYBIN" -m tests.lab kubeconfig --monitor) || exit 1
cat >"$WORK/netpol-drift.yaml" <<YAML
cluster: {name: lab, kubeconfig: $KC}
probe: {timeout_seconds: 1.0, run_deadline_seconds: 60}
store: {url: "sqlite:///$WORK/history.db"}
log_level: WARNING
YAML
RUN=("$ND" --config "$WORK/netpol-drift.yaml" run --once --suite "$EX/shop/suite.yaml")

step "First live run: real probe pods, stored; with no known-good run yet, it becomes the baseline" \
  netpol-drift run --once --suite "$EX/shop/suite.yaml" --db "sqlite:///\$TMP/history.db"
"${RUN[@]}"
rc=$?
[[ $rc -eq 0 ]] || { echo "expected exit 0 from the first live run, got $rc" >&2; exit 1; }

step "Break a policy: apply shop-changed/policies.yaml (the 8443 -> 8444 typo in api-egress)" \
  python -m tests.lab.demo_app break
"$PYBIN" -m tests.lab.demo_app break || exit 1

step "Second live run (exit 1): the changed flow is re-probed, confirmed, and blamed on the policy" \
  netpol-drift run --once --suite "$EX/shop/suite.yaml" --db "sqlite:///\$TMP/history.db"
"${RUN[@]}"
rc=$?
[[ $rc -eq 1 ]] || { echo "expected exit 1 from the run after the policy edit, got $rc" >&2; exit 1; }

step "The history of this cluster" netpol-drift history --db "sqlite:///\$TMP/history.db"
"$ND" --config "$WORK/netpol-drift.yaml" history || exit 1

printf '\n\033[1mdemo finished\033[0m: offline, the typo is caught by check and explained by diff; live, the same\n'
printf 'typo is seen by real packets, stored as drift from the known-good run, and blamed on shop/api-egress.\n'
