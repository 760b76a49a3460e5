#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm from the Go
# module proxy into a cache outside the repository, keyed by version, and prints the
# directory that holds them. A cached version costs nothing; a cold build takes minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${HAKEEPER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hakeeper/tools}
export CGO_ENABLED=0 GOFLAGS=-mod=mod

modver() { # version of module $2 required by the wrapper module in $1
  awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$here/$1/go.mod"
}

build() { # $1 wrapper dir, $2 version, $3 ldflags, rest: packages (binaries named as go build names them)
  local dir=$1 ver=$2 ldflags=$3; shift 3
  local out="$cache/$dir-$ver"
  local names=() p
  # go build names a binary after its package path, skipping a major-version suffix (/v3)
  for p in "$@"; do p=${p%/v[0-9]*}; names+=("$out/$(basename "$p")"); done
  local missing=0
  for p in "${names[@]}"; do [ -x "$p" ] || missing=1; done
  if [ $missing = 1 ]; then
    echo "building $dir $ver (cold: several minutes)..." >&2
    mkdir -p "$out.tmp"
    (cd "$here/$dir" && go build -ldflags "$ldflags" -o "$out.tmp/" "$@")
    rm -rf "$out" && mv "$out.tmp" "$out"
  fi
  mkdir -p "$cache/bin"
  for p in "${names[@]}"; do ln -sf "$p" "$cache/bin/$(basename "$p")"; done
}

k8s=$(modver k8s k8s.io/kubernetes)
minor=$(echo "$k8s" | cut -d. -f2)
build k8s "$k8s" "-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
etcd=$(modver etcd go.etcd.io/etcd/server/v3)
build etcd "$etcd" "-s -w" go.etcd.io/etcd/server/v3
# the etcd server's main package is go.etcd.io/etcd/server, so its binary is named "server"
mv -f "$cache/bin/server" "$cache/bin/etcd"
helm=$(modver helm helm.sh/helm/v3)
build helm "$helm" "-s -w -X helm.sh/helm/v3/internal/version.version=$helm" helm.sh/helm/v3/cmd/helm
echo "$cache/bin"
