# hakeeper — every target installs what it needs; `make test` on a fresh machine works.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
TOOLS_BIN = $(shell bash hack/build-tools.sh)
DEBS := haproxy prometheus keepalived wrk sysbench nginx iproute2 \
  containerd runc containernetworking-plugins iptables conntrack docker.io mmdebstrap bind9-dnsutils \
  qemu-system-x86 ipvsadm kmod
DEB_BINS := haproxy prometheus keepalived wrk sysbench nginx ip containerd runc dockerd mmdebstrap iptables conntrack dig \
  /usr/lib/cni/bridge /usr/lib/cni/portmap qemu-system-x86_64 ipvsadm depmod
STATE := .cluster

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP) ## create .venv with the package and test dependencies

tools: ## build etcd, kube-apiserver, kube-controller-manager, kubectl, helm (cached in ~/.cache/hakeeper)
	@bash hack/build-tools.sh

debs: ## install the Debian packages the integration tier runs (only those missing)
	@missing=0; for b in $(DEB_BINS); do command -v $$b >/dev/null || PATH=$$PATH:/usr/sbin command -v $$b >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing $(DEBS)"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  printf '#!/bin/sh\nexit 101\n' | $$sudo tee /usr/sbin/policy-rc.d >/dev/null; $$sudo chmod +x /usr/sbin/policy-rc.d; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null; \
	  $$sudo rm -f /usr/sbin/policy-rc.d; \
	fi

images: venv debs ## build the product and test images (cached in ~/.cache/hakeeper/images)
	PYTHONPATH=hack $(PY) -m imagebuild build

crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(VENV)/bin/hakeeper crds --output-dir crds
	mkdir -p charts/hakeeper/crds && cp crds/*.yaml charts/hakeeper/crds/

crds-check: venv ## fail when crds/ or the chart's copy differ from the models
	$(VENV)/bin/hakeeper crds --check crds
	$(VENV)/bin/hakeeper crds --check charts/hakeeper/crds

check: venv ## static checks: ruff, the import contracts (import-linter), mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

lint: venv tools crds-check check ## the static checks and helm lint of the chart
	$(TOOLS_BIN)/helm lint charts/hakeeper

unit: venv tools ## unit tier
	HAKEEPER_TOOLS_BIN=$(TOOLS_BIN) $(PY) -m pytest tests/unit

integration: venv debs ## integration tier: real haproxy, MariaDB and MySQL from their images, prometheus, keepalived
	$(PY) -m pytest tests/integration

lvs: venv debs ## lvs tier: IPVS traffic (NAT, DR, TUN) through keepalived in a qemu VM of Debian's kernel
	$(PY) -m pytest tests/lvs

e2e: venv tools debs images ## e2e tier on the local one-node cluster (or HAKEEPER_E2E_KUBECONFIG)
	HAKEEPER_TOOLS_BIN=$(TOOLS_BIN) $(PY) -m pytest tests/e2e

test: venv tools debs images crds-check check ## the static checks, then every tier: unit, integration, lvs, e2e
	HAKEEPER_TOOLS_BIN=$(TOOLS_BIN) $(TOOLS_BIN)/helm lint charts/hakeeper
	HAKEEPER_TOOLS_BIN=$(TOOLS_BIN) $(PY) -m pytest tests

bench: venv tools debs ## benchmarks: tables with ratios against a baseline from the same run
	@set -e; found=0; for b in bench/*/run.py; do [ -e "$$b" ] || continue; found=1; echo "== $$b"; $(PY) $$b; done; \
	[ $$found = 1 ] || echo "no benchmarks yet"

cluster-up: venv tools debs images ## start the local one-node cluster in the background (state in .cluster/)
	PYTHONPATH=hack PATH=$(TOOLS_BIN):$$PATH $(PY) -m localcluster up --state-dir $(STATE)
	@echo "export KUBECONFIG=$$PWD/$(STATE)/kubeconfig PATH=$(TOOLS_BIN):\$$PATH"

cluster-down: venv ## stop the local cluster (and remove what it left)
	PYTHONPATH=hack $(PY) -m localcluster down --state-dir $(STATE)

demo: venv tools debs images ## hakeeper's story on the local cluster, each step timed (ARGS=--keep leaves it running)
	HAKEEPER_TOOLS_BIN=$(TOOLS_BIN) $(PY) hack/demo.py $(ARGS)

e2e-kind: ## the e2e suite on a kind cluster (needs docker and kind; cannot run on the CI machine)
	bash hack/e2e-kind.sh

.PHONY: help venv tools debs images crds crds-check check lint unit integration lvs e2e test bench cluster-up cluster-down demo e2e-kind
