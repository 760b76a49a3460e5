"""LoadBalancerPool spec.tls on the real node: HTTPS through the pool's Service with the
Secret's certificate, plain HTTP redirected, a rotated Secret served by every balancer without a
reload (kubelet refreshes the Secret volume, the agent pushes it through HAProxy's runtime API),
and a Secret HAProxy could not serve refused with Ready=False and one Warning Event.

Certificates are made here with `cryptography` (tests/support/certs.py); clients compare the
fingerprint of the certificate their handshake received.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time

import pytest

from ..support.certs import Cert, der_fingerprint, make_cert
from ..support.kube_objects import backend_deployment
from ..support.polling import poll
from .test_loadbalancerpool import _balancers, _pool, _worker_pid

pytestmark = pytest.mark.e2e
VOLUME_REFRESH = 240
"""Seconds a Secret's change may take to reach a pod's volume: kubelet's sync period (1 min)
plus its cache's TTL, with room for this 2-core node; then the agent's 5 s resync."""


def _secret(name: str, cert: Cert, type_: str = "kubernetes.io/tls") -> dict:
    secret = cert.secret(name, type_=type_)
    del secret["metadata"]["namespace"]  # kubectl apply -n
    return secret


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed; the fingerprint is compared instead
    return context


def _https(ip: str, port: int, path: str = "/") -> tuple[int, str, str]:
    """(status, body, the served certificate's fingerprint) of one request on a new connection."""
    conn = http.client.HTTPSConnection(ip, port, timeout=5, context=_context())
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        fingerprint = der_fingerprint(conn.sock.getpeercert(binary_form=True) or b"")
        conn.request("GET", path, headers={"Connection": "close", "Host": "web.example"})
        response = conn.getresponse()
        return response.status, response.read().decode().strip(), fingerprint
    finally:
        conn.close()


def _ready(cluster, namespace: str) -> dict:
    status = cluster.get("lbp", "web", "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


class HttpsClient(threading.Thread):
    """New TLS connections in a loop through the Service until stopped; counts failures."""

    def __init__(self, ip: str, port: int):
        super().__init__(daemon=True)
        self.ip, self.port = ip, port
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, _, _ = _https(self.ip, self.port)
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
            self.stop.wait(0.05)

    def __enter__(self) -> HttpsClient:
        self.start()
        poll(lambda: self.ok > 10 or self.failures, 30, what="the HTTPS client's first answers")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(10)


def test_https_through_the_service_redirect_and_rotation_without_reload(operator, namespace):
    first, second = make_cert("first.example", hosts=("web.example",)), make_cert("second.example",
                                                                                   hosts=("web.example",))
    operator.apply(_secret("web-tls", first), "-n", namespace)
    operator.apply(backend_deployment("web", 2), "-n", namespace)
    operator.apply(_pool("web", "web", tls={"secretName": "web-tls", "redirectHTTP": True}), "-n", namespace)
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=180s", "-n", namespace, "lbp/web")
    poll(lambda: len(_balancers(operator, namespace, "web")) == 2, 60, what="two ready balancer pods")
    service = operator.get("service", "web", "-n", namespace)
    ip = service["spec"]["clusterIP"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"frontend": 80, "metrics": 8404, "https": 443}

    # HTTPS through the Service with the Secret's certificate; the backend learns the scheme
    status, body, fingerprint = poll(lambda: _https(ip, 443), 30, what="HTTPS through the Service",
                                     ignore=(OSError, http.client.HTTPException))
    assert status == 200 and body.startswith("web-") and fingerprint == first.fingerprint
    assert _https(ip, 443, "/header/X-Forwarded-Proto")[1] == "https"
    # plain HTTP is redirected, path and query kept
    conn = http.client.HTTPConnection(ip, 80, timeout=5)
    conn.request("GET", "/cart?item=1", headers={"Host": "web.example"})
    answer = conn.getresponse()
    assert (answer.status, answer.getheader("Location")) == (308, "https://web.example/cart?item=1")
    conn.close()

    # the rotation: every balancer serves the new certificate, no reload, no failed request
    balancers = {b["metadata"]["name"]: b["status"]["podIP"] for b in _balancers(operator, namespace, "web")}
    workers = {name: _worker_pid(operator, namespace, name) for name in balancers}
    with HttpsClient(ip, 443) as client:
        operator.apply(_secret("web-tls", second), "-n", namespace)
        rotated = time.monotonic()
        for name, pod_ip in balancers.items():
            poll(lambda pod_ip=pod_ip: _https(pod_ip, 8443)[2] == second.fingerprint, VOLUME_REFRESH,
                 what=f"{name} to serve the rotated certificate", interval=1.0)
        took = time.monotonic() - rotated
    print(f"\nrotation: every balancer served the new certificate {took:.0f} s after the Secret changed; "
          f"through the Service {client.ok} HTTPS requests, {len(client.failures)} failed")
    assert client.failures == [], client.failures[:5]
    assert client.ok > 20
    for name, pid in workers.items():
        assert _worker_pid(operator, namespace, name) == pid, f"{name}: a rotation must not reload HAProxy"
    pods = {p["metadata"]["name"]: p for p in _balancers(operator, namespace, "web")}
    assert all(pods[name]["metadata"]["annotations"].get("hakeeper.io/reloads") == "0" for name in balancers)
    assert _ready(operator, namespace)["status"] == "True"


def test_a_secret_haproxy_cannot_serve_is_refused_and_nothing_rolls_out(operator, namespace):
    cert, other = make_cert("web.example"), make_cert("other.example")
    wrong_key = _secret("web-tls", cert)
    wrong_key["data"]["tls.key"] = _secret("x", other)["data"]["tls.key"]
    operator.apply(wrong_key, "-n", namespace)
    operator.apply(backend_deployment("web", 1), "-n", namespace)
    operator.apply(_pool("web", "web", tls={"secretName": "web-tls"}, balancer={"replicas": 1}), "-n", namespace)
    ready = poll(lambda: (lambda c: c if c.get("reason") == "TLSSecretInvalid" else None)(_ready(operator, namespace)),
                 60, what="Ready=False TLSSecretInvalid")
    assert ready["status"] == "False" and "not the key of the first certificate" in ready["message"], ready
    poll(lambda: [(e["type"], e["reason"]) for e in operator.get(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=web,involvedObject.kind=LoadBalancerPool")[
        "items"] if e["reason"] == "TLSSecretInvalid"] == [("Warning", "TLSSecretInvalid")], 30,
        what="one Warning TLSSecretInvalid")
    # nothing rolled out: no balancer Deployment whose pods could not serve
    assert operator.kubectl("get", "deployment", "web-haproxy", "-n", namespace, check=False).returncode != 0

    # fixed: the pool runs (the operator reads a refused Secret again every 5 s)
    operator.kubectl("patch", "secret", "web-tls", "-n", namespace, "--type=merge",
                     "-p", json.dumps({"data": {"tls.key": _secret("x", cert)["data"]["tls.key"]}}))
    fixed = time.monotonic()
    poll(lambda: operator.kubectl("get", "deployment", "web-haproxy", "-n", namespace, check=False).returncode == 0,
         20, what="the balancer Deployment, within a few seconds of the fix", interval=0.5)
    applied = time.monotonic() - fixed
    operator.kubectl("wait", "--for=condition=Ready", "--timeout=180s", "-n", namespace, "lbp/web")
    print(f"\nthe fixed Secret was applied {applied:.1f} s after the fix; Ready {time.monotonic() - fixed:.0f} s after")
    pod_ip = poll(lambda: [b["status"]["podIP"] for b in _balancers(operator, namespace, "web")], 60,
                  what="a ready balancer")[0]
    assert _https(pod_ip, 8443)[2] == cert.fingerprint
    # still one Warning: the refusal was posted once
    assert len([e for e in operator.get("events", "-n", namespace, "--field-selector", "involvedObject.name=web")[
        "items"] if e["reason"] == "TLSSecretInvalid"]) == 1
