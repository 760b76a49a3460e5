# Sourced by hack/build-linearizability.sh and hack/build-seaweedfs.sh: strict mode, the cache
# directory of the Go programs we build ($cache) and their build environment (static binaries;
# modules from the proxy as go.mod and go.sum say).
set -euo pipefail
cache=${HAKEEPER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hakeeper/tools}
export CGO_ENABLED=0 GOFLAGS=-mod=mod
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
