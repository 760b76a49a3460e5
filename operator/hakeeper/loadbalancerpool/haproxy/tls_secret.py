"""Whether a pool's TLS Secret can be served, and what the pool's status says when not (pure).

The operator reads the Secret spec.tls names (`get`, never list or watch: the chart grants
no more on Secrets) on every pass of the pool, so a Secret broken is seen within the
pool's resync (30 s) or at its next wake-up, and a refused one is read again every 5 s
(handlers.py). It checks what HAProxy would refuse: the
type kubernetes.io/tls, both keys, a PEM certificate (then its chain) in tls.crt, an
unencrypted PEM private key in tls.key, and that the key belongs to the certificate. The
`cryptography` package parses them; nothing of the Secret's data reaches a message or a log.

A refused Secret sets Ready=False with reason TLSSecretInvalid (and one Warning Event, by the
handler). What the operator then applies depends on whether the balancers already run with
that Secret (`serving_secret`):

- they do (the Secret was rotated to something broken): the pass goes on as usual; nothing it
  applies depends on the Secret's contents, and each agent refuses the broken certificate at
  HAProxy's runtime API and keeps serving the previous one (agents/haproxy_tls.py), so backend
  changes keep reaching the balancers;
- they do not (TLS just turned on, or another Secret named): nothing is applied, so the
  balancers are not rolled to pods that could not start or a configuration that would not load.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from hakeeper.api.conditions import ConditionType, PoolReason, Verdict, with_verdicts
from hakeeper.api.loadbalancerpool import LoadBalancerPoolStatus
from hakeeper.loadbalancerpool.haproxy.tls import SECRET_KEYS, SECRET_VOLUME

TLS_SECRET_TYPE = "kubernetes.io/tls"


def _refused(namespace: str, name: str, why: str) -> Verdict:
    return Verdict(False, PoolReason.TLS_SECRET_INVALID,
                   f"spec.tls.secretName {namespace}/{name}: {why}; the balancers keep what they serve")


def check(secret: Mapping[str, Any] | None, namespace: str, name: str) -> Verdict | None:
    """None when the Secret (as read from the API, or None when it does not exist) holds a
    certificate and its key HAProxy can serve; otherwise Ready's verdict, saying what is wrong.

    Not checked: validity dates and host names (an expired certificate is still served, as
    by HAProxy itself; the client judges it)."""
    if secret is None:
        return _refused(namespace, name, "the Secret does not exist")
    kind = secret.get("type") or "Opaque"
    if kind != TLS_SECRET_TYPE:
        return _refused(namespace, name, f"the Secret has type {kind}, not {TLS_SECRET_TYPE} "
                                         "(e.g. kubectl create secret tls NAME --cert=... --key=...)")
    data = secret.get("data") or {}
    decoded: dict[str, bytes] = {}
    for key in SECRET_KEYS:
        try:
            decoded[key] = base64.b64decode(data.get(key) or "", validate=True)
        except (binascii.Error, ValueError):
            return _refused(namespace, name, f"{key} is not base64")
        if not decoded[key].strip():
            return _refused(namespace, name, f"{key} is missing or empty")
    try:
        chain = x509.load_pem_x509_certificates(decoded["tls.crt"])
    except ValueError:
        return _refused(namespace, name, "tls.crt holds no PEM certificate")
    try:
        private_key = serialization.load_pem_private_key(decoded["tls.key"], password=None)
    except TypeError:
        return _refused(namespace, name, "tls.key is encrypted; HAProxy needs an unencrypted key")
    except (ValueError, UnsupportedAlgorithm):
        return _refused(namespace, name, "tls.key holds no PEM private key")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            chain[0].public_key().public_bytes(serialization.Encoding.DER, spki):
        return _refused(namespace, name, "tls.key is not the key of the first certificate in tls.crt")
    return None


def serving_secret(deployment: Mapping[str, Any] | None) -> str | None:
    """The Secret the balancer Deployment (as read from the API) mounts for TLS, if any."""
    volumes = ((((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
    for volume in volumes:
        if volume.get("name") == SECRET_VOLUME:
            return (volume.get("secret") or {}).get("secretName")
    return None


def with_ready(status: Mapping[str, Any] | None, generation: int | None, verdict: Verdict,
               now: str | None = None) -> dict[str, Any]:
    """`status` (a status patch, or the status as read) with Ready set to `verdict`, as a merge
    patch of the status subresource: its other fields as they are, observedGeneration this one."""
    patch = dict(status or {})
    conditions = with_verdicts(patch.get("conditions"), [(ConditionType.READY, verdict)], generation, now)
    patch.update(LoadBalancerPoolStatus(observed_generation=generation, conditions=conditions).patch())
    return patch
