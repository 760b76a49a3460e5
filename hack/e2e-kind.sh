#!/usr/bin/env bash
# The e2e suite (tests/e2e) against a kind cluster made from kind-config.yaml, with the
# operator image built from operator/Dockerfile and installed by the Helm chart.
#
#   make e2e-kind                 # create the cluster, run, delete the cluster
#   KEEP_CLUSTER=1 make e2e-kind  # keep it afterwards (a later run reuses it)
#   bash hack/e2e-kind.sh -k peering -x   # extra arguments go to pytest
#
# Needs docker and kind (and internet for the images). It cannot run on the CI machine,
# which has no docker: there the same suite runs against the local control plane.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cluster=hakeeper            # the name in kind-config.yaml
image=hakeeper:e2e
release=hakeeper
namespace=hakeeper-system   # where tests/e2e expects the operator
kind_release=v0.33.         # the kind release whose notes list kind-config.yaml's node image

need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "e2e-kind: '$1' is required and not on PATH; install it: $2" >&2
  exit 1
}
need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
if ! docker info >/dev/null 2>&1; then
  echo "e2e-kind: docker is installed but its daemon does not answer (is it running, may you use it?)" >&2
  exit 1
fi
case "$(kind version)" in
  "kind $kind_release"*) ;;
  *) echo "e2e-kind: warning: $(kind version); kind-config.yaml pins the node image of kind ${kind_release}x" >&2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/hakeeper-e2e-kind.XXXXXX")
tools="$work/bin"

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -s "$work/kubeconfig" ]; then
    echo "e2e-kind: failed (exit $rc); the operator's last log lines:" >&2
    KUBECONFIG="$work/kubeconfig" "$tools/kubectl" -n "$namespace" logs "deployment/$release" \
      --all-containers --tail=100 >&2 || true
  fi
  rm -rf "$work"
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    echo "e2e-kind: keeping the cluster; kubectl config: kind get kubeconfig --name $cluster" >&2
  else
    kind delete cluster --name "$cluster"   # a no-op when it was never created
  fi
  exit "$rc"
}
trap cleanup EXIT

# kubectl and helm: the ones on PATH, else the versions the repository builds (slow once).
mkdir -p "$tools"
if command -v kubectl >/dev/null 2>&1 && command -v helm >/dev/null 2>&1; then
  ln -s "$(command -v kubectl)" "$tools/kubectl"
  ln -s "$(command -v helm)" "$tools/helm"
else
  echo "e2e-kind: kubectl or helm not on PATH; building them (hack/build-tools.sh)" >&2
  built=$(bash hack/build-tools.sh | tail -n 1)
  ln -s "$built/kubectl" "$tools/kubectl"
  ln -s "$built/helm" "$tools/helm"
fi
kubectl() { "$tools/kubectl" "$@"; }
helm() { "$tools/helm" "$@"; }

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "e2e-kind: reusing the kind cluster '$cluster'"
else
  kind create cluster --config kind-config.yaml --wait 180s
fi
kind get kubeconfig --name "$cluster" >"$work/kubeconfig"
export KUBECONFIG="$work/kubeconfig"

docker build -t "$image" -f operator/Dockerfile .
kind load docker-image "$image" --name "$cluster"
# the tests' backend pods (tests/e2e use this name; the local node agent runs it as a process)
backend_image=registry.local/hakeeper/test-http-backend:1
docker build -t "$backend_image" -f hack/localcluster/Dockerfile.test-http-backend hack/localcluster
kind load docker-image "$backend_image" --name "$cluster"
# keepalived for engine lvs (the nodes need the ip_vs kernel module for traffic to flow)
keepalived_image=ghcr.io/hakeeper/keepalived:2.2.7
docker build -t "$keepalived_image" --build-arg BASE="$image" hack/images/keepalived
kind load docker-image "$keepalived_image" --name "$cluster"
# A rebuilt image keeps its tag; its ID in a pod annotation makes `helm upgrade` roll the pods.
image_id=$(docker image inspect --format '{{.Id}}' "$image")

kubectl apply -f crds/
kubectl wait --for=condition=Established --timeout=60s -f crds/

helm upgrade --install "$release" charts/hakeeper \
  --namespace "$namespace" --create-namespace \
  --set image.repository="${image%%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set-string "podAnnotations.hakeeper\.io/image-id=$image_id" \
  --wait --timeout 5m

make -s venv
HAKEEPER_E2E_KUBECONFIG="$work/kubeconfig" \
HAKEEPER_E2E_OPERATOR=external \
HAKEEPER_TOOLS_BIN="$tools" \
  .venv/bin/python -m pytest tests/e2e -m "not localcluster" "$@"  # localcluster: tests of the local node agent
