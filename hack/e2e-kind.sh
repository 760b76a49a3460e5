#!/usr/bin/env bash
# The e2e suite (tests/e2e) against a kind cluster made from kind-config.yaml, with the
# operator image built from operator/Dockerfile and installed by the Helm chart.
#
#   make e2e-kind                 # create the cluster, run, delete the cluster
#   KEEP_CLUSTER=1 make e2e-kind  # keep it afterwards (a later run reuses it)
#   bash hack/e2e-kind.sh -k peering -x   # extra arguments go to pytest
#
# Needs docker and kind, and internet (Docker Hub's Debian images, Debian's and PyPI's packages).
# It cannot run on the CI machine, which has no registry and cannot run kind's privileged
# nodes: there the same suite runs against the local node (kubelet + containerd).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cluster=hakeeper            # the name in kind-config.yaml
image=ghcr.io/hakeeper/hakeeper:0.1.0   # the operator image: its reference in hack/imagebuild/table.py
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

# Every product and test image, from the same recipes as the local node's (hack/imagebuild's
# table, images/*, operator/Dockerfile), built with this docker on their default bases
# (Docker Hub's debian:*-slim) and loaded into the kind nodes. The node's own images (pause,
# coredns) are kind's. Pods name the images by these references, with IfNotPresent/Never.
make -s venv
while IFS=$'\t' read -r name reference dockerfile context base_arg; do
  echo "e2e-kind: building $name as $reference"
  args=(-t "$reference" -f "$dockerfile")
  [ -n "$base_arg" ] && args+=(--build-arg "BASE=$base_arg")
  docker build "${args[@]}" "$context"
  kind load docker-image "$reference" --name "$cluster"
done < <(PYTHONPATH=hack .venv/bin/python -m imagebuild list --json --no-node | .venv/bin/python -c '
import json, sys
for line in sys.stdin:
    i = json.loads(line)
    # an image built on another of the table names it; a Debian base stays the recipe default
    base = i["default_base"] if i["base"].startswith("image:") else ""
    print("\t".join([i["name"], i["reference"], i["dockerfile"], i["context"], base]))
')
# A rebuilt image keeps its tag; its ID in a pod annotation makes `helm upgrade` roll the pods.
image_id=$(docker image inspect --format '{{.Id}}' "$image")

kubectl apply -f crds/
kubectl wait --for=condition=Established --timeout=60s -f crds/

helm upgrade --install "$release" charts/hakeeper \
  --namespace "$namespace" --create-namespace \
  --set image.repository="${image%%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set-string "podAnnotations.hakeeper\.io/image-id=$image_id" \
  --set "lvs.allowedNamespaces={e2e-lvs-*}" \
  --wait --timeout 5m

# The tests reach pods and ClusterIPs from this machine, as on the local node: route each node's
# pod range to that node, and the Service range to the control plane (removed again on exit).
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
routes=()
while read -r cidr address; do
  [ -n "$cidr" ] && routes+=("$cidr via $address")
done < <(kubectl get nodes -o jsonpath='{range .items[*]}{.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
control_plane=$(kubectl get node "$cluster-control-plane" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
routes+=("10.96.0.0/12 via $control_plane")   # kind's default serviceSubnet
for route in "${routes[@]}"; do
  # shellcheck disable=SC2086
  $sudo ip route replace $route
done
unroute() { for route in "${routes[@]}"; do $sudo ip route del ${route%% *} 2>/dev/null || true; done; }
trap 'rc=$?; unroute; (exit $rc); cleanup' EXIT

# What the tests need to know of this cluster: how to reach a node's shell (to SIGKILL a
# container's process as a crash would), an address of this machine that pods reach (the
# docker network's gateway), and where keepalived may put a VIP (the nodes' eth0, an unused
# address at the top of the docker network).
subnet=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | tr ' ' '\n' | grep -m1 '\.')
gateway=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -m1 '\.')
vip=$(.venv/bin/python -c "import ipaddress, sys; print(ipaddress.ip_network(sys.argv[1])[-10])" "$subnet")

HAKEEPER_E2E_KUBECONFIG="$work/kubeconfig" \
HAKEEPER_E2E_OPERATOR=external \
HAKEEPER_E2E_NODE_EXEC="docker exec {node}" \
HAKEEPER_E2E_HOST_IP="$gateway" \
HAKEEPER_E2E_VRRP_INTERFACE=eth0 \
HAKEEPER_E2E_VIRTUAL_IP="$vip" \
HAKEEPER_TOOLS_BIN="$tools" \
  .venv/bin/python -m pytest tests/e2e "$@"
