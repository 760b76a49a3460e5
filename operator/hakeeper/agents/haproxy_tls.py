"""The balancer agent's TLS certificate: from the pool's Secret volume into HAProxy, rotated
without a reload and without dropping a connection.

kubelet keeps the Secret's tls.crt and tls.key in a volume of the agent's container and, when
the Secret changes, swaps the volume's contents atomically (up to about a minute later: the
kubelet sync period plus its cache). The agent looks at them on every pass (at least every
5 s) and keeps two things equal to them:

1. the file HAProxy loads (``--tls-file``, certificate chain then key, mode 0600), so a
   HAProxy that starts, restarts or reloads serves the current certificate;
2. the certificate the running worker serves, through the runtime API: ``set ssl cert <file>``
   with the new PEM as its payload, then ``commit ssl cert <file>`` (HAProxy 2.6 management
   guide, 9.3 "set ssl cert", "commit ssl cert"). New handshakes present the new certificate;
   established connections keep theirs; no reload.

While HAProxy runs, the file is written only after HAProxy accepted the certificate: HAProxy
checks the PEM and that the key matches the certificate at commit, so a broken Secret is
refused there (and aborted), the previous certificate keeps serving, and a later reload still
finds a file that loads. A refused certificate is not retried until the Secret changes again.

`decide` is pure; `TlsSync` observes and acts. Nothing here raises into the agent's loop: a
certificate that cannot be applied must not hold up the backends' runtime changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import socket
import ssl

from hakeeper.agents.loop import atomic_write

log = logging.getLogger("hakeeper.agent")
CERT_KEY, KEY_KEY = "tls.crt", "tls.key"
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_FINGERPRINT = re.compile(r"^SHA1 FingerPrint:\s*([0-9A-Fa-f]+)\s*$", re.MULTILINE)


class TlsError(RuntimeError):
    """HAProxy refused the certificate, or its runtime API did not answer."""


# -- pure ---------------------------------------------------------------------------------

def joined(cert: str, key: str) -> str:
    """The PEM file HAProxy loads: the chain, then the key, without blank lines (a blank line
    ends a runtime API payload, management guide 9.3)."""
    lines = [line for line in (cert.strip() + "\n" + key.strip()).splitlines() if line.strip()]
    return "\n".join(lines) + "\n"


def fingerprint(pem: str) -> str | None:
    """SHA-1 of the first certificate's DER, in upper-case hex as `show ssl cert` prints it;
    None when `pem` holds no certificate."""
    match = _PEM_CERT.search(pem)
    if match is None:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(match[0])
    except ValueError:
        return None
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def served_fingerprint(show_ssl_cert: str) -> str | None:
    """The fingerprint in a `show ssl cert <file>` reply (None if there is none)."""
    match = _FINGERPRINT.search(show_ssl_cert)
    return match[1].upper() if match else None


@dataclasses.dataclass(frozen=True)
class Observed:
    source: str | None
    """The Secret volume's certificate and key, joined; None when they cannot be read."""
    disk: str | None
    """The file HAProxy loads, as it is (None: not written yet)."""
    running: bool
    """HAProxy's runtime API answers."""
    loaded: bool = False
    """The running worker loaded the file (its configuration binds it): a worker started before
    spec.tls was added has not, and cannot take a certificate at runtime."""
    served: str | None = None
    """The fingerprint of the certificate the running worker serves."""
    refused: str | None = None
    """A source HAProxy refused (not pushed again until the Secret changes)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    push: str | None = None
    """The PEM to hand to the running HAProxy (set + commit ssl cert)."""
    write: str | None = None
    """New content for the file HAProxy loads."""
    waiting: str | None = None


def decide(observed: Observed) -> Decision:
    """What to do about the certificate. Before HAProxy runs, the file alone (HAProxy reads it at
    start); while it runs, a push whenever the served certificate or the file differs from the
    Secret, and the file with it."""
    source = observed.source
    if source is None:
        return Decision(waiting="no certificate and key in the Secret volume")
    write = source if observed.disk != source else None
    if not observed.running or not observed.loaded:
        # HAProxy reads the file when it starts or reloads
        return Decision(write=write)
    if observed.served == fingerprint(source) and write is None:
        return Decision()
    if observed.refused == source:
        return Decision(waiting="HAProxy refused the Secret's certificate; the previous one keeps serving")
    # the file follows once HAProxy took it, so the file always holds what loads
    return Decision(push=source, write=write)


# -- I/O ----------------------------------------------------------------------------------

def send(path: str, text: str, timeout: float = 5.0) -> str:
    """One request to HAProxy's runtime API (a command, and a payload after `<<`); its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(text.encode())
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise TlsError(f"{path}: {exc}") from exc
    return b"".join(chunks).decode(errors="replace")


def push(admin_socket: str, file: str, pem: str) -> None:
    """Replace the certificate HAProxy loaded from `file` by `pem` (chain and key), for new
    handshakes, without a reload; TlsError (and the transaction aborted) when HAProxy refuses it."""
    reply = send(admin_socket, f"set ssl cert {file} <<\n{pem}\n")
    if "Transaction created" not in reply and "Transaction updated" not in reply:
        send(admin_socket, f"abort ssl cert {file}\n")
        raise TlsError(f"HAProxy refused the certificate for {file}: {reply.strip()}")
    reply = send(admin_socket, f"commit ssl cert {file}\n")
    if "Success!" not in reply:
        send(admin_socket, f"abort ssl cert {file}\n")
        raise TlsError(f"HAProxy could not commit the certificate for {file}: {reply.strip()}")


def read_source(directory: str) -> str | None:
    """tls.crt and tls.key of the Secret volume, joined; None when either is missing or empty.

    Read twice: kubelet swaps the whole directory at once, and a swap between reading the
    certificate and the key would pair an old certificate with a new key."""
    for _ in range(3):
        first = _read_pair(directory)
        if first is not None and _read_pair(directory) == first:
            return joined(*first)
    return None


def _read_pair(directory: str) -> tuple[str, str] | None:
    try:
        with open(os.path.join(directory, CERT_KEY)) as cert, open(os.path.join(directory, KEY_KEY)) as key:
            pair = cert.read(), key.read()
    except OSError:
        return None
    return pair if all(part.strip() for part in pair) else None


def write_private(path: str, text: str) -> None:
    """Write atomically with mode 0600: a private key, read by the uid both of the pod's
    containers run as."""
    atomic_write(path, text, mode=0o600)


class TlsSync:
    """Keeps the file and the running HAProxy's certificate equal to the Secret volume's."""

    def __init__(self, secret_dir: str, tls_file: str, admin_socket: str) -> None:
        self.secret_dir = secret_dir
        self.tls_file = tls_file
        self.admin_socket = admin_socket
        self.refused: str | None = None
        self.pushes = 0
        """Certificates handed to the running HAProxy since the agent started."""

    def observe(self) -> Observed:
        source = read_source(self.secret_dir)
        try:
            with open(self.tls_file) as f:
                disk: str | None = f.read()
        except FileNotFoundError:
            disk = None
        try:
            reply = send(self.admin_socket, f"show ssl cert {self.tls_file}\n", timeout=1.0)
        except TlsError:
            return Observed(source, disk, running=False, refused=self.refused)
        served = served_fingerprint(reply)
        return Observed(source, disk, running=True, loaded=served is not None, served=served, refused=self.refused)

    def act(self, decision: Decision) -> None:
        if decision.push is not None:
            try:
                push(self.admin_socket, self.tls_file, decision.push)
            except TlsError as exc:
                self.refused = decision.push
                log.warning("%s; the previous certificate keeps serving", exc)
                return
            self.pushes += 1
            log.info("HAProxy serves certificate %s (runtime API, no reload)", fingerprint(decision.push))
        if decision.write is not None:
            write_private(self.tls_file, decision.write)
            log.info("wrote %s (certificate %s)", self.tls_file, fingerprint(decision.write))

    def sync(self) -> Decision:
        """One pass: observe, decide, act. Never raises for HAProxy's refusal (logged)."""
        decision = decide(self.observe())
        self.act(decision)
        if decision.waiting:
            log.debug("certificate: %s", decision.waiting)
        return decision
