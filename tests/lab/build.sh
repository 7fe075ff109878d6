#!/usr/bin/env bash
# Builds the lab's third-party binaries (etcd, kube-apiserver, kube-controller-manager, kube-proxy,
# kube-router) from the Go module proxy, once.
# Each lands in $LAB_CACHE/<name>-<version>/<name>; a present binary is never rebuilt, so only the first run
# on a machine pays. Nothing is written inside the repository.
set -euo pipefail

ETCD_VERSION=${ETCD_VERSION:-3.6.14}
K8S_VERSION=${K8S_VERSION:-1.36.3}
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-2.1.0}
# Helm lints and renders the chart in deploy/helm (tests/test_helm_chart.py); not a lab component, but built
# and cached the same way (the latest Helm 3 on the Go module proxy when this was written).
HELM_VERSION=${HELM_VERSION:-3.22.0}
LAB_CACHE=${LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/netpol-drift-lab}

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$LAB_CACHE"

say() { printf '[lab-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# build NAME VERSION FUNCTION: runs FUNCTION in a scratch dir, installs its ./NAME into the cache atomically.
build() {
  local name=$1 version=$2 fn=$3
  local dest="$LAB_CACHE/$name-$version/$name"
  if [[ -x $dest ]]; then say "$name $version: cached at $dest"; return; fi
  local work; work=$(mktemp -d "$LAB_CACHE/.build-$name-XXXX")
  say "$name $version: building in $work (cold builds take minutes)"
  local t0=$SECONDS
  ( cd "$work" && "$fn" "$version" ) >"$work/build.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30; kill -0 "$pid" 2>/dev/null && say "$name: still building ($((SECONDS - t0))s): $(tail -n 1 "$work/build.log" | cut -c1-100)"
  done
  if ! wait "$pid"; then say "$name: build FAILED, last lines of $work/build.log:"; tail -n 30 "$work/build.log" >&2; exit 1; fi
  mkdir -p "$(dirname "$dest")"
  mv "$work/$name" "$dest.tmp" && mv "$dest.tmp" "$dest"
  rm -rf "$work"
  say "$name $version: built in $((SECONDS - t0))s -> $dest"
}

build_etcd() {
  go mod init lab.local/etcd
  go get "go.etcd.io/etcd/server/v3@v$1"
  go build -trimpath -ldflags "-s -w" -o etcd go.etcd.io/etcd/server/v3
}

# build_k8s CMD VERSION: one command of the k8s.io/kubernetes module (kube-apiserver, kube-controller-manager,
# kube-proxy). Each gets the same throwaway wrapper module, so the module graph, and with it every compiled
# package in the Go build cache, is shared: only the first of them pays for the common packages.
build_k8s() {
  local cmd=$1 k=$2 s="0.${2#1.}"
  go mod init lab.local/kubernetes
  # k8s.io/kubernetes requires its staging modules at v0.0.0 via ./staging replaces, which a dependant cannot
  # see: point each at its published version.
  local kmod
  kmod=$(go mod download -json "k8s.io/kubernetes@v$k" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$kmod"); do
    go mod edit "-replace=$m=$m@v$s"
  done
  go get "k8s.io/kubernetes/cmd/$cmd@v$k"
  go build -trimpath -o "$cmd" -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$k" \
    "k8s.io/kubernetes/cmd/$cmd"
}

build_kube_apiserver() { build_k8s kube-apiserver "$1"; }
build_kube_controller_manager() { build_k8s kube-controller-manager "$1"; }
build_kube_proxy() { build_k8s kube-proxy "$1"; }

build_kube_router() {
  GOBIN=$PWD go install "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$1"
}

build_helm() {
  go mod init lab.local/helm
  go get "helm.sh/helm/v3/cmd/helm@v$1"
  go build -trimpath -o helm -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$1" helm.sh/helm/v3/cmd/helm
}

want=${*:-etcd kube-apiserver kube-controller-manager kube-proxy kube-router helm}
for w in $want; do
  case $w in
    etcd) build etcd "$ETCD_VERSION" build_etcd ;;
    kube-apiserver) build kube-apiserver "$K8S_VERSION" build_kube_apiserver ;;
    kube-controller-manager) build kube-controller-manager "$K8S_VERSION" build_kube_controller_manager ;;
    kube-proxy) build kube-proxy "$K8S_VERSION" build_kube_proxy ;;
    kube-router) build kube-router "$KUBE_ROUTER_VERSION" build_kube_router ;;
    helm) build helm "$HELM_VERSION" build_helm ;;
    *) say "unknown component $w"; exit 2 ;;
  esac
done
