"""`hakeeper render`: offline configs that HAProxy accepts, refusals in the API server's words."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from ..support.certs import make_cert

ROOT = pathlib.Path(__file__).resolve().parents[2]
# engine dns renders a DNSEndpoint, not a balancer configuration: its examples (the layering one
# holds every engine) are tested in test_dns_pool.py
POOLS = [p for p in sorted((ROOT / "examples").rglob("*.yaml"))
         if "kind: LoadBalancerPool" in p.read_text() and "engine: lvs" not in p.read_text()
         and "engine: dns" not in p.read_text()]
LVS_POOLS = [p for p in sorted((ROOT / "examples").rglob("*.yaml"))
             if "engine: lvs" in p.read_text() and "engine: dns" not in p.read_text()]


def hakeeper(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hakeeper", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "operator")})


@pytest.mark.parametrize("example", POOLS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_example_renders_a_config_haproxy_accepts(example, tmp_path):
    result = hakeeper("render", "-f", str(example), "-b", "a=10.244.0.5:8080@3", "-b", "10.244.0.6:8080")
    assert result.returncode == 0, result.stderr
    cfg = tmp_path / "haproxy.cfg"
    # spec.tls: the certificate the agent writes into the pod's run directory from the Secret
    (tmp_path / "tls.pem").write_text(make_cert().pem)
    # a pool with request classes reads the refused ones from a file the agent writes before HAProxy
    # starts (HAProxy refuses a configuration whose pattern file is missing): here, an empty one
    acl = tmp_path / "refused-classes.acl"
    acl.write_text("")
    cfg.write_text(result.stdout.replace(" ssl crt /var/run/hakeeper/tls.pem ", f" ssl crt {tmp_path}/tls.pem ")
                   .replace("/var/run/hakeeper/refused-classes.acl", str(acl)))
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True,
                           env={**os.environ, "POD_IP": "127.0.0.1"})
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"^\s+server s\d+ 10\.244\.0\.5:8080 .*weight 3\b", result.stdout, re.MULTILINE), result.stdout


@pytest.mark.parametrize("example", LVS_POOLS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_lvs_example_renders_a_config_keepalived_accepts(example, tmp_path):
    pool = next(d for d in yaml.safe_load_all(example.read_text()) if d["kind"] == "LoadBalancerPool")
    port = pool["spec"]["backends"]["port"]  # DR and TUN cannot map ports: the backends listen on it
    result = hakeeper("render", "-f", str(example), "-b", f"a=10.244.0.5:{port}@3", "-b", f"10.244.0.6:{port}")
    assert result.returncode == 0, result.stderr
    assert re.search(r"real_server 10\.244\.0\.5 \d+ \{\n\s+weight 3", result.stdout), result.stdout
    conf = tmp_path / "keepalived.conf"
    conf.write_text(result.stdout)
    check = subprocess.run(["keepalived", "-t", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_configmap_output_is_what_the_operator_writes():
    result = hakeeper("render", "--configmap", "-f", str(ROOT / "examples/quickstart/loadbalancerpool.yaml"))
    assert result.returncode == 0, result.stderr
    assert "kind: ConfigMap" in result.stdout and "hakeeper.io/config-hash" in result.stdout
    assert "haproxy.cfg" in result.stdout and "servers.json" in result.stdout


def test_an_invalid_manifest_is_refused_as_the_api_server_would():
    manifest = ("apiVersion: hakeeper.io/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: x}\n"
                "spec: {backends: {selector: {matchLabels: {a: b}}, port: 80}, algorithm: hdr}\n")
    result = hakeeper("render", "-f", "-", stdin=manifest)
    assert result.returncode == 1
    assert 'The LoadBalancerPool "x" is invalid' in result.stderr
    assert "hashHeader is required with algorithm hdr" in result.stderr


@pytest.mark.parametrize("backend", ["10.0.0.1", "x=10.0.0.1:99999", "10.0.0.1:80@999", "a b=1.2.3.4:80"])
def test_a_malformed_backend_is_refused(backend):
    result = hakeeper("render", "-f", str(ROOT / "examples/quickstart/loadbalancerpool.yaml"), "-b", backend)
    assert result.returncode == 1 and "expected [NAME=]ADDRESS:PORT[@WEIGHT]" in result.stderr
