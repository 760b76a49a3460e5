"""`hakeeper render -f FILE`: the balancer configuration the operator would produce, offline
(haproxy.cfg for engine haproxy, keepalived.conf for engine lvs, the DNSEndpoint for engine dns).

Like `helm template`: no cluster. The manifest is checked as the API server would check it
(api/offline.py), and backends come from the command line instead of EndpointSlices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from pydantic import ValidationError

from hakeeper.api import GROUP
from hakeeper.api.configmaps.haproxy import SlotEntry, on_disk, parse_servers
from hakeeper.api.configmaps.keepalived import CONFIG_FILE as KEEPALIVED_CONF
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.meta import CONFIG_HASH_ANNOTATION
from hakeeper.api.offline import InvalidManifest, check
from hakeeper.loadbalancerpool import objects
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.dns import records
from hakeeper.loadbalancerpool.dns import targets as dns_targets
from hakeeper.loadbalancerpool.haproxy.config import render
from hakeeper.loadbalancerpool.lvs import objects as lvs_objects
from hakeeper.loadbalancerpool.lvs.config import render as render_keepalived

# bounded digits: int() refuses strings of more than 4300 digits with a bare ValueError
_BACKEND = re.compile(r"(?:(?P<name>[A-Za-z0-9_.-]+)=)?(?P<address>[0-9.]+):(?P<port>[0-9]{1,5})"
                      r"(?:@(?P<weight>[0-9]{1,3}))?")


class RenderError(ValueError):
    pass


def parse_backend(text: str) -> Backend:
    """[NAME=]ADDRESS:PORT[@WEIGHT], e.g. web-0=10.244.0.5:8080@3."""
    match = _BACKEND.fullmatch(text)
    if not match or not 1 <= int(match["port"]) <= 65535 or int(match["weight"] or 1) > 256:
        raise RenderError(f"backend {text!r}: expected [NAME=]ADDRESS:PORT[@WEIGHT] (weight 0-256)")
    name = match["name"] or f"{match['address']}-{match['port']}"
    return Backend(name=name, address=match["address"], port=int(match["port"]), weight=int(match["weight"] or 1))


def pools(documents: Iterable[Any]) -> Iterator[tuple[str, str, LoadBalancerPoolSpec]]:
    """(name, namespace, spec) of every LoadBalancerPool; other hakeeper kinds are checked and skipped."""
    for doc in documents:
        if not doc:
            continue
        if not isinstance(doc, dict):
            raise RenderError(f"expected a Kubernetes object, found {type(doc).__name__}")
        if not str(doc.get("apiVersion", "")).startswith(GROUP + "/"):
            continue  # a manifest may carry the backends' Deployment and such next to the pool
        kind, spec = check(doc)
        if kind.kind == "LoadBalancerPool":
            meta = doc.get("metadata") or {}
            try:
                model = LoadBalancerPoolSpec.model_validate(spec)
            except ValidationError as error:
                # What the schema check let through and the model refuses (a final newline, which
                # Python's "$" takes), said as a refusal instead of a traceback (found by the fuzz tests)
                problems = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
                raise RenderError(f'The LoadBalancerPool "{meta["name"]}" is invalid: {problems}') from None
            yield meta["name"], meta.get("namespace") or "default", model


def render_dns(name: str, namespace: str, spec: LoadBalancerPoolSpec, backends: list[Backend],
               others: dict[tuple[str, str], LoadBalancerPoolSpec]) -> str:
    """The DNSEndpoint of an engine dns pool: over the backends given (each ready), or over the
    pools of dns.pools whose address the input holds (an lvs pool's virtualIP), each taken as
    Ready. A haproxy pool's address is its Service's, known in the cluster only: said in a comment."""
    assert spec.dns is not None
    head = f"# LoadBalancerPool {namespace}/{name} (engine dns): {spec.dns.hostname}"
    notes: list[str] = []
    if spec.dns.pools is None:
        found = dns_targets.backend_targets(backends)
    else:
        found = []
        for named in spec.dns.pools:
            other = others.get((namespace, named.name))
            if other is not None and other.engine == "lvs" and other.lvs is not None:
                found.append(dns_targets.Target(named.name, other.lvs.virtual_ip, named.weight, True))
            else:
                what = "not in the input" if other is None else f"engine {other.engine}: its address is known in the " \
                                                               "cluster only"
                notes.append(f"# dns.pools {named.name} ({what}) is left out here")
    endpoint = records.dns_endpoint(name, namespace, spec.dns, dns_targets.published(found))
    if endpoint is None:
        return "\n".join([head, *notes, "# no target: the operator writes no DNSEndpoint"]) + "\n"
    return "\n".join([head, *notes]) + "\n" + yaml.safe_dump(endpoint, sort_keys=False)


def render_documents(text: str, backends: list[Backend], *, as_configmap: bool = False) -> str:
    out = []
    found = list(pools(yaml.safe_load_all(text)))
    by_name = {(namespace, name): spec for name, namespace, spec in found}
    for name, namespace, spec in found:
        if spec.engine == "dns":
            out.append(render_dns(name, namespace, spec, backends, by_name))
            continue
        if spec.engine == "lvs":
            keepalived = render_keepalived(name, spec, backends)
            if as_configmap:
                out.append("---\n" + yaml.safe_dump(lvs_objects.config_map(
                    name, namespace, keepalived.files, keepalived.config_hash), sort_keys=False))
            else:
                out.append(f"# LoadBalancerPool {namespace}/{name}: config {keepalived.config_hash}\n"
                           + keepalived.files[KEEPALIVED_CONF])
            continue
        rendered = render(name, spec, backends)
        if as_configmap:
            cm = objects.config_map(name, namespace, rendered.files)
            cm["metadata"]["annotations"] = {CONFIG_HASH_ANNOTATION: rendered.config_hash}
            out.append("---\n" + yaml.safe_dump(cm, sort_keys=False))
        else:
            entries: list[SlotEntry] = parse_servers(rendered.files["servers.json"])
            out.append(f"# LoadBalancerPool {namespace}/{name}: config {rendered.config_hash}, "
                       f"structure {rendered.structure_hash}\n" + on_disk(rendered.files["haproxy.cfg"], entries))
    if not out:
        raise RenderError("no LoadBalancerPool in the input")
    return "\n".join(out)


__all__ = ["InvalidManifest", "RenderError", "parse_backend", "render_documents"]
