"""spec.tls on a real HAProxy 2.6 with the real agent: HTTPS with the Secret's certificate, the
redirect of plain HTTP, and a certificate rotated in the Secret taking effect under load through
the runtime API, with no reload and no failed request.

The Secret volume is a directory kept the way kubelet keeps one (files that are links into
`..data`, itself a link swapped atomically to a new timestamped directory on every update).
Certificates are made by `cryptography` (tests/support/certs.py); every HTTPS client records the
fingerprint of the certificate its handshake received.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import pathlib
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any

import pytest

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents import haproxy_tls

from ..support.certs import Cert, der_fingerprint, make_cert
from ..support.polling import hold, poll
from .haproxy_support import FRONTEND_PORT, SETTLING, Balancer, Lab, RunningAgent, get, snapshot, spec

pytestmark = pytest.mark.integration
HTTPS_PORT = 8443


class SecretVolume:
    """A directory as kubelet keeps a Secret volume: tls.crt and tls.key are links to
    `..data/<key>`, and an update writes a new timestamped directory and renames a new
    `..data` link over the old one (one atomic step; kubernetes pkg/volume/util/atomic_writer.go)."""

    def __init__(self, path: pathlib.Path, cert: Cert) -> None:
        self.path = path
        path.mkdir()
        self.generation = 0
        self.update(cert.cert_pem, cert.key_pem)
        for key in ("tls.crt", "tls.key"):
            os.symlink(f"..data/{key}", path / key)

    def update(self, cert_pem: str, key_pem: str) -> None:
        self.generation += 1
        data = self.path / f"..{self.generation}"
        data.mkdir()
        (data / "tls.crt").write_text(cert_pem)
        (data / "tls.key").write_text(key_pem)
        os.symlink(data.name, self.path / "..data_tmp")
        os.replace(self.path / "..data_tmp", self.path / "..data")


class TlsAgent(RunningAgent):
    """The agent (with its TLS part) in a thread, fed ConfigMap snapshots; resync as in the pod
    but faster (0.2 s instead of 5 s), which only shortens the wait for the volume's change."""

    def __init__(self, balancer: Balancer, secret_dir: pathlib.Path) -> None:
        self.tls_file = os.path.join(balancer.run_dir, "tls.pem")
        self.tls = haproxy_tls.TlsSync(str(secret_dir), self.tls_file, balancer.admin)
        super().__init__(balancer, resync=0.2, tls=self.tls)


def client_context() -> ssl.SSLContext:
    # the tests compare fingerprints themselves; the certificates are self-signed
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def https_get(address: str, path: str = "/", timeout: float = 5.0) -> tuple[int, str, str]:
    """One request on a new TLS connection: (status, body, the served certificate's fingerprint)."""
    conn = http.client.HTTPSConnection(address, HTTPS_PORT, timeout=timeout, context=client_context())
    try:
        conn.connect()  # the handshake; the socket is gone once a Connection: close answer is read
        assert isinstance(conn.sock, ssl.SSLSocket)
        fingerprint = der_fingerprint(conn.sock.getpeercert(binary_form=True) or b"")
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode().strip()
        return response.status, body, fingerprint
    finally:
        conn.close()


def served(address: str) -> str:
    """The fingerprint a new handshake receives."""
    return https_get(address)[2]


class TlsLoad:
    """Clients without pause: `fresh` threads each make a new TLS connection per request (a new
    handshake: they see a rotation), one keeps a single keep-alive connection for the whole run
    (it must survive a rotation). A failure is anything but a 200."""

    def __init__(self, address: str, fresh: int = 2) -> None:
        self.address = address
        self.failures: list[str] = []
        self.ok = 0
        self.handshakes: list[tuple[float, str]] = []
        self.keepalive_ok = 0
        self.keepalive_certs: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._fresh, daemon=True) for _ in range(fresh)]
        self._threads.append(threading.Thread(target=self._keepalive, daemon=True))

    def _fresh(self) -> None:
        while not self._stop.is_set():
            try:
                status, _, fingerprint = https_get(self.address)
                outcome = None if status == 200 else f"HTTP {status}"
            except (OSError, http.client.HTTPException) as exc:
                outcome, fingerprint = f"{type(exc).__name__}: {exc}", ""
            with self._lock:
                if outcome is None:
                    self.ok += 1
                    self.handshakes.append((time.monotonic(), fingerprint))
                else:
                    self.failures.append(outcome)

    def _keepalive(self) -> None:
        conn = http.client.HTTPSConnection(self.address, HTTPS_PORT, timeout=5, context=client_context())
        try:
            while not self._stop.is_set():
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                    # http.client reconnects silently after a close; the socket object tells
                    sock = conn.sock
                    assert sock is not None
                    with self._lock:
                        self.keepalive_certs.add(der_fingerprint(sock.getpeercert(binary_form=True) or b""))
                        if response.status == 200:
                            self.keepalive_ok += 1
                        else:
                            self.failures.append(f"keep-alive HTTP {response.status}")
                    if response.will_close:
                        self.failures.append("the balancer closed the keep-alive connection")
                        return
                except (OSError, http.client.HTTPException) as exc:
                    with self._lock:
                        self.failures.append(f"keep-alive {type(exc).__name__}: {exc}")
                    return
                time.sleep(0.005)
        finally:
            conn.close()

    def since(self, moment: float) -> Counter:
        with self._lock:
            return Counter(fp for t, fp in self.handshakes if t >= moment)

    def wait_requests(self, count: int, timeout: float = 20.0) -> None:
        start = self.ok
        poll(lambda: self.ok - start >= count, timeout, what=f"{count} more HTTPS requests")

    def __enter__(self) -> TlsLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def start_tls_pool(lab: Lab, tmp_path: pathlib.Path, cert: Cert, **tls: Any) -> tuple[Balancer, SecretVolume,
                                                                                          contextlib.ExitStack]:
    """A backend, a balancer with spec.tls and its agent; HAProxy started once the agent wrote
    the certificate and the configuration, as the pod's startup probe has it."""
    (a,) = lab.backends("a")
    balancer = lab.balancer()
    volume = SecretVolume(tmp_path / "secret", cert)
    rendered = balancer.render(spec(tls={"secretName": "web-tls", **tls}), [a.backend()])
    stack = contextlib.ExitStack()
    agent = stack.enter_context(TlsAgent(balancer, volume.path))
    agent.latest.put(snapshot(rendered))
    poll(lambda: os.path.exists(balancer.config_path), 10, what="the agent to write haproxy.cfg")
    assert pathlib.Path(agent.tls_file).read_text() == haproxy_tls.joined(cert.cert_pem, cert.key_pem)
    assert os.stat(agent.tls_file).st_mode & 0o777 == 0o600
    balancer.start()
    poll(lambda: agent.reported == [rendered.config_hash], 10, what="the agent to report", ignore=SETTLING)
    stack.agent = agent  # type: ignore[attr-defined]
    return balancer, volume, stack


def test_https_serves_the_secrets_certificate_and_plain_http_still_serves(lab: Lab, tmp_path: pathlib.Path) -> None:
    cert = make_cert("web.example")
    balancer, _, stack = start_tls_pool(lab, tmp_path, cert)
    with stack:
        status, body, fingerprint = https_get(balancer.address)
        assert (status, body, fingerprint) == (200, "a", cert.fingerprint)
        # HTTP/2 to a client that offers it (ALPN)
        context = client_context()
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection((balancer.address, HTTPS_PORT), timeout=5) as raw, \
                context.wrap_socket(raw) as tls_socket:
            assert tls_socket.selected_alpn_protocol() == "h2"
            assert tls_socket.version() in ("TLSv1.2", "TLSv1.3")
        # without a redirect both serve, and the backend learns which one the client used,
        # whatever the client claimed
        assert https_get(balancer.address, "/header/X-Forwarded-Proto")[1] == "https"
        conn = http.client.HTTPConnection(balancer.address, FRONTEND_PORT, timeout=5)
        conn.request("GET", "/header/X-Forwarded-Proto", headers={"X-Forwarded-Proto": "https"})
        assert conn.getresponse().read().decode().strip() == "http"
        conn.close()


def test_redirect_http_sends_plain_requests_to_https_but_not_acme_challenges(lab: Lab, tmp_path: pathlib.Path) -> None:
    cert = make_cert("web.example")
    balancer, _, stack = start_tls_pool(lab, tmp_path, cert, redirectHTTP=True, port=HTTPS_PORT)
    with stack:
        answer = get(balancer.address, "/shop/cart?item=1&n=%20", headers={"Host": f"web.example:{FRONTEND_PORT}"})
        assert answer.status == 308
        assert answer.headers["location"] == f"https://web.example:{HTTPS_PORT}/shop/cart?item=1&n=%20"
        # RFC 8555 HTTP-01 answers over plain HTTP
        assert get(balancer.address, "/.well-known/acme-challenge/token").status == 200
        # following the redirect works
        assert https_get(balancer.address, "/shop/cart?item=1")[:2] == (200, "a")


def test_a_rotated_secret_takes_effect_under_load_without_reload_or_failure(lab: Lab, tmp_path: pathlib.Path) -> None:
    old, new = make_cert("old.example"), make_cert("new.example")
    balancer, volume, stack = start_tls_pool(lab, tmp_path, old)
    with stack, TlsLoad(balancer.address) as load:
        agent = stack.agent  # type: ignore[attr-defined]
        worker = balancer.worker()
        load.wait_requests(100)
        assert set(load.since(0)) == {old.fingerprint}
        volume.update(new.cert_pem, new.key_pem)
        rotated = time.monotonic()
        poll(lambda: load.since(time.monotonic() - 0.05) and set(load.since(time.monotonic() - 0.05)) == {new.fingerprint},
             10, what="new handshakes to present the new certificate")
        took = time.monotonic() - rotated
        after = time.monotonic()
        load.wait_requests(200)
        keepalive_before = load.keepalive_ok
        load.wait_requests(50)
    print(f"\nrotation: new handshakes present the new certificate {took:.2f} s after the volume changed "
          f"(agent resync 0.2 s); {load.ok} HTTPS requests on new connections and {load.keepalive_ok} on one "
          f"keep-alive connection, {len(load.failures)} failed; reloads {balancer.proc().reloads}")
    assert load.failures == [], load.failures[:5]
    assert set(load.since(after)) == {new.fingerprint}
    # the keep-alive connection lived through the rotation, on its first handshake's certificate
    assert load.keepalive_ok > keepalive_before > 0 and load.keepalive_certs == {old.fingerprint}
    # no reload: the same worker, the master counted none, the agent did none
    assert balancer.worker() == worker and balancer.proc().reloads == 0 and agent.agent.reloads == 0
    assert agent.tls.pushes == 1
    assert pathlib.Path(agent.tls_file).read_text() == haproxy_tls.joined(new.cert_pem, new.key_pem)


def test_a_file_replaced_without_the_runtime_push_is_not_served_until_a_reload(lab: Lab, tmp_path: pathlib.Path) -> None:
    """The negative control of the rotation: HAProxy does not read the file again by itself, so
    the test above sees the runtime push; a reload reads the file (what a restart would serve)."""
    old, new = make_cert("old.example"), make_cert("new.example")
    balancer, _, stack = start_tls_pool(lab, tmp_path, old)
    stack.close()  # the agent stops: nothing pushes
    tls_file = os.path.join(balancer.run_dir, "tls.pem")
    haproxy_tls.write_private(tls_file, haproxy_tls.joined(new.cert_pem, new.key_pem))
    hold(lambda: served(balancer.address) == old.fingerprint, 2.0, what="the old certificate served")
    runtime.reload(balancer.master, balancer.admin)
    assert served(balancer.address) == new.fingerprint


def test_a_broken_rotation_keeps_the_old_certificate_and_a_working_file(lab: Lab, tmp_path: pathlib.Path) -> None:
    old, new, stranger = make_cert("old.example"), make_cert("new.example"), make_cert("x.example")
    balancer, volume, stack = start_tls_pool(lab, tmp_path, old)
    with stack:
        agent = stack.agent  # type: ignore[attr-defined]
        good_file = pathlib.Path(agent.tls_file).read_text()
        volume.update(new.cert_pem, stranger.key_pem)  # a key that is not the certificate's
        poll(lambda: agent.tls.refused is not None, 10, what="HAProxy to refuse the certificate")
        hold(lambda: served(balancer.address) == old.fingerprint, 1.0, what="the old certificate served")
        assert pathlib.Path(agent.tls_file).read_text() == good_file  # a reload still loads
        runtime.reload(balancer.master, balancer.admin)
        assert served(balancer.address) == old.fingerprint
        # fixed in the Secret: served at once
        volume.update(new.cert_pem, new.key_pem)
        poll(lambda: served(balancer.address) == new.fingerprint, 10, what="the fixed certificate", ignore=SETTLING)
