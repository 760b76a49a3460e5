"""TLS termination at the HAProxy balancer (spec.tls): the lines of haproxy.cfg and the parts
of the balancer pod that carry the certificate (pure).

How the certificate travels. The pool's Secret (kubernetes.io/tls) is a volume of the agent
container alone, with only its two keys (tls.crt, tls.key); HAProxy's container gets no
Secret. The agent joins them into one PEM file in the pod's shared run directory
(``<run>/tls.pem``, certificate chain then key, mode 0600 for the uid both containers run as)
before it writes haproxy.cfg, so HAProxy finds it at its first start and at every reload. When
kubelet refreshes the volume after the Secret changed (an atomic swap of the directory, up to
about a minute later), the agent writes the new file and hands the new certificate to the
running worker through the runtime API (`set ssl cert` + `commit ssl cert`, HAProxy 2.6
management guide 9.3): new handshakes present it, established connections carry on, nothing
reloads (agents/haproxy_tls.py).

The plain bind keeps serving HTTP unless tls.redirectHTTP asks for a redirect. Every request
gets X-Forwarded-Proto (https or http) set by the balancer, replacing what a client sent.
"""

from __future__ import annotations

from typing import Any

from hakeeper.api.configmaps.haproxy import ConfigError
from hakeeper.api.loadbalancerpool import TLS_FRONTEND_PORT, LoadBalancerPoolSpec

TLS_FILE = "tls.pem"
"""The certificate chain and key HAProxy loads, in the run directory; written by the agent."""
SECRET_VOLUME = "tls-secret"
SECRET_DIR = "/var/run/hakeeper-tls"
"""Where the agent container mounts the Secret's tls.crt and tls.key (read only)."""
SECRET_KEYS = ("tls.crt", "tls.key")
"""The keys of a kubernetes.io/tls Secret (Kubernetes docs, "Secrets": TLS secrets)."""
HTTPS_PORT_NAME = "https"
ACME_CHALLENGE = "/.well-known/acme-challenge/"
"""HTTP-01 challenges (RFC 8555 section 8.3) must be answered over plain HTTP: never redirected."""


def tls_file(run_dir: str) -> str:
    """The path of the PEM file HAProxy loads (``<run_dir>/tls.pem``)."""
    return f"{run_dir.rstrip('/')}/{TLS_FILE}"


def check_ports(spec: LoadBalancerPoolSpec, frontend_port: int, tls_frontend_port: int) -> None:
    """ConfigError when the HTTPS bind would share a port with the plain or the metrics one
    (the CEL rules refuse it at apply): haproxy -c accepts two binds on one port, and the kernel
    then splits the clients between them (SO_REUSEPORT)."""
    if spec.tls is None:
        return
    if tls_frontend_port in (frontend_port, spec.balancer.metrics_port):
        raise ConfigError(f"the HTTPS port {tls_frontend_port} is taken by the plain or the metrics frontend")


def global_lines(spec: LoadBalancerPoolSpec) -> list[str]:
    """Lines of the global section: no TLS below 1.2 (RFC 8996 deprecates 1.0 and 1.1)."""
    if spec.tls is None:
        return []
    return ["ssl-default-bind-options ssl-min-ver TLSv1.2"]


def frontend_lines(spec: LoadBalancerPoolSpec, listen_address: str, run_dir: str,
                   tls_frontend_port: int = TLS_FRONTEND_PORT) -> list[str]:
    """Lines of the clients frontend after its plain bind: the TLS bind, the optional redirect
    of plain HTTP, and X-Forwarded-Proto. Empty without spec.tls.

    The redirect is 308 (RFC 9110 section 15.4.9: the method and body are kept, where 301 lets
    clients turn a POST into a GET) to the request's host without its port, on tls.port (the
    Service's HTTPS port), with the path and query (`pathq`, HAProxy 2.6 configuration manual
    7.3.6). `redirect scheme` would keep the Host header's port, the plain one."""
    tls = spec.tls
    if tls is None:
        return []
    # alpn: HTTP/2 to clients that offer it (HAProxy speaks HTTP/1.1 to the backends either way)
    lines = [f'bind "{listen_address}:{tls_frontend_port}" ssl crt {tls_file(run_dir)} alpn h2,http/1.1']
    if tls.redirect_http:
        port = "" if tls.port == 443 else f":{tls.port}"
        lines.append("http-request redirect location "
                     f"https://%[req.hdr(host),regsub(:[0-9]+$,)]{port}%[pathq] code 308 "
                     f"unless {{ ssl_fc }} || {{ path_beg {ACME_CHALLENGE} }}")
    # set, not added: a client's own X-Forwarded-Proto would lie to the backend
    lines += ["http-request set-header X-Forwarded-Proto https if { ssl_fc }",
              "http-request set-header X-Forwarded-Proto http unless { ssl_fc }"]
    return lines


# -- the balancer pod ---------------------------------------------------------------------

def secret_volume(spec: LoadBalancerPoolSpec) -> dict[str, Any] | None:
    """The Secret as a volume (only its two keys: a missing one keeps the pod from starting
    rather than HAProxy from loading), or None without spec.tls.

    Mode 0444: kubelet makes the files root's (the pod sets no fsGroup) and the agent runs as
    uid 65532; the volume is mounted into the agent container alone."""
    if spec.tls is None:
        return None
    return {"name": SECRET_VOLUME, "secret": {
        "secretName": spec.tls.secret_name, "defaultMode": 0o444,
        "items": [{"key": key, "path": key} for key in SECRET_KEYS]}}


def agent_mount(spec: LoadBalancerPoolSpec) -> list[dict[str, Any]]:
    """The agent container's mount of the Secret volume (empty without spec.tls)."""
    if spec.tls is None:
        return []
    return [{"name": SECRET_VOLUME, "mountPath": SECRET_DIR, "readOnly": True}]


def agent_args(spec: LoadBalancerPoolSpec, run_dir: str) -> list[str]:
    """The agent's flags for the certificate: where the Secret is, where HAProxy reads it."""
    if spec.tls is None:
        return []
    return ["--tls-dir", SECRET_DIR, "--tls-file", tls_file(run_dir)]


def container_ports(spec: LoadBalancerPoolSpec) -> list[dict[str, Any]]:
    """HAProxy's HTTPS port inside the pod (empty without spec.tls)."""
    if spec.tls is None:
        return []
    return [{"name": HTTPS_PORT_NAME, "containerPort": TLS_FRONTEND_PORT, "protocol": "TCP"}]


def service_ports(spec: LoadBalancerPoolSpec) -> list[dict[str, Any]]:
    """The pool Service's HTTPS port, tls.port to the pods' https port (empty without spec.tls)."""
    if spec.tls is None:
        return []
    return [{"name": HTTPS_PORT_NAME, "port": spec.tls.port, "targetPort": HTTPS_PORT_NAME, "protocol": "TCP"}]
