"""Self-signed certificates and keys for the TLS tests, made with `cryptography` (no openssl
process, no file unless asked)."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclasses.dataclass(frozen=True)
class Cert:
    cert_pem: str
    key_pem: str
    fingerprint: str
    """SHA-1 of the DER, upper-case hex (as HAProxy's `show ssl cert` prints it)."""

    @property
    def pem(self) -> str:
        """Certificate then key: the file HAProxy loads."""
        return self.cert_pem + self.key_pem

    def secret(self, name: str, namespace: str = "default", type_: str = "kubernetes.io/tls") -> dict:
        """A Secret as the API returns it (data base64-encoded)."""
        return {"apiVersion": "v1", "kind": "Secret", "type": type_,
                "metadata": {"name": name, "namespace": namespace},
                "data": {"tls.crt": b64(self.cert_pem), "tls.key": b64(self.key_pem)}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def make_cert(common_name: str = "web.example", *, hosts: tuple[str, ...] = ("web.example", "127.0.0.1"),
              days: int = 2) -> Cert:
    """A self-signed P-256 certificate for `hosts` (names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    der = cert.public_bytes(serialization.Encoding.DER)
    return Cert(cert_pem, key_pem, hashlib.sha1(der).hexdigest().upper())


def der_fingerprint(der: bytes) -> str:
    """The SHA-1 fingerprint of a certificate as a TLS client received it (DER)."""
    return hashlib.sha1(der).hexdigest().upper()
