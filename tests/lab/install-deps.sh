#!/usr/bin/env bash
# Installs the Debian packages that the lab, the PostgreSQL, the dashboard and the kubectl plugin tests need,
# only those missing.
# Needs root (or sudo) the first time; a no-op afterwards.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have ipset || need+=(ipset)
have conntrack || need+=(conntrack)
have openssl || need+=(openssl)
# kubectl finds the kubectl-netpol_drift plugin in tests/test_outputs.py (any kubectl will do: Debian's is old).
have kubectl || need+=(kubernetes-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The dashboard tests drive Debian's headless Chromium through Playwright (never a downloaded browser).
have chromium || need+=(chromium fonts-dejavu-core)
[[ ${#need[@]} -eq 0 ]] && exit 0
echo "install-deps: installing ${need[*]}" >&2
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
