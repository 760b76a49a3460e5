"""What the balancer agents (haproxy, keepalived) share: their ConfigMap as a source, atomic
files, and reporting through their own pod's annotations.

The agents' only Kubernetes client is pykube-ng: a sidecar in every balancer pod should be
small, and it needs three calls (get and watch one ConfigMap, patch its own pod).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import tempfile
import threading
from collections.abc import Iterable, Mapping
from typing import Any

CONFIG_HASH_ANNOTATION = "hakeeper.io/config-hash"
log = logging.getLogger("hakeeper.agent")


@dataclasses.dataclass(frozen=True)
class ConfigMapView:
    """The parts of the ConfigMap an agent reads."""

    data: Mapping[str, str]
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Latest:
    """The newest ConfigMap snapshot; sources put, the agent loop takes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: ConfigMapView | None = None
        self._version = 0

    def put(self, value: ConfigMapView) -> None:
        with self._cond:
            self._value = value
            self._version += 1
            self._cond.notify_all()

    def wait_newer(self, seen: int, timeout: float) -> tuple[int, ConfigMapView | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen, timeout=timeout)
            return self._version, self._value


def atomic_write(path: str, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- where the ConfigMap comes from -------------------------------------------------------

def read_dir(path: str, names: Iterable[str]) -> ConfigMapView:
    """A directory holding the ConfigMap's files (offline use and tests)."""
    data = {}
    for name in names:
        file = pathlib.Path(path, name)
        if file.exists():
            data[name] = file.read_text()
    return ConfigMapView(data=data)


def follow_dir(path: str, names: Iterable[str], latest: Latest, stop: threading.Event, poll: float = 0.1) -> None:
    names = tuple(names)
    last: dict[str, str] | None = None
    while not stop.is_set():
        try:
            cm = read_dir(path, names)
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
        else:
            if dict(cm.data) != last:
                last = dict(cm.data)
                latest.put(cm)
        stop.wait(poll)


def _view(obj: Mapping[str, Any]) -> ConfigMapView:
    return ConfigMapView(data=dict(obj.get("data") or {}),
                         annotations=dict((obj.get("metadata") or {}).get("annotations") or {}))


def follow_configmap(api: Any, namespace: str, name: str, latest: Latest, stop: threading.Event) -> None:
    """Get, then watch the one ConfigMap from that version on; get again only when the
    version is gone (410) or the connection broke."""
    import pykube
    import requests

    query = pykube.ConfigMap.objects(api, namespace=namespace).filter(field_selector={"metadata.name": name})
    version: str | None = None
    backoff = 0.5
    while not stop.is_set():
        try:
            if version is None:
                found = pykube.ConfigMap.objects(api, namespace=namespace).get_or_none(name=name)
                if found is None:
                    stop.wait(backoff)  # not created yet: the operator writes it first, soon
                    continue
                latest.put(_view(found.obj))
                version = found.obj["metadata"]["resourceVersion"]
            for event in query.watch(since=version, params={"timeoutSeconds": 240, "allowWatchBookmarks": "true"}):
                if stop.is_set():
                    return
                version = event.object.obj["metadata"]["resourceVersion"]
                if event.type in ("ADDED", "MODIFIED"):
                    latest.put(_view(event.object.obj))
                # DELETED: keep serving the last configuration; the operator recreates it
            backoff = 0.5
        except pykube.exceptions.HTTPError as exc:
            version = None
            if exc.code != 410:  # 410 Gone: our version is too old, get again at once
                log.warning("watching configmap %s/%s: %s", namespace, name, exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        except (requests.RequestException, OSError, ValueError) as exc:
            version = None
            log.warning("watching configmap %s/%s: %s", namespace, name, exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)


def read_configmap(api: Any, namespace: str, name: str) -> ConfigMapView:
    import pykube

    return _view(pykube.ConfigMap.objects(api, namespace=namespace).get(name=name).obj)


# -- reporting ----------------------------------------------------------------------------

def annotate_pod(api: Any, namespace: str, pod: str, annotations: Mapping[str, str]) -> None:
    body = {"metadata": {"annotations": dict(annotations)}}
    response = api.patch(url=f"pods/{pod}", namespace=namespace, data=json.dumps(body),
                         headers={"Content-Type": "application/merge-patch+json"})
    api.raise_for_status(response)


def client(kubeconfig: str | None) -> Any:
    """In the pod: its ServiceAccount; elsewhere KUBECONFIG or ~/.kube/config."""
    import pykube

    config = pykube.KubeConfig.from_file(kubeconfig) if kubeconfig else pykube.KubeConfig.from_env()
    return pykube.HTTPClient(config)
