"""What the balancer agents (haproxy, keepalived) share: their ConfigMap as a source, atomic
files, and reporting through their own pod's annotations.

The agents' only Kubernetes client is pykube-ng: a sidecar in every balancer pod should be
small, and it needs three calls (get and watch one ConfigMap, patch its own pod).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

log = logging.getLogger("hakeeper.agent")
Report = Callable[[Mapping[str, str]], None]
"""Publishes annotations of the agent's pod (applied hash, VRRP state)."""


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


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Readers see the old file or the new one, never half of one; the file gets `mode`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- where the ConfigMap comes from -------------------------------------------------------

def read_text_or_none(path: str) -> str | None:
    """A file's text, or None when it does not exist (yet)."""
    try:
        return pathlib.Path(path).read_text()
    except FileNotFoundError:
        return None


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


WATCH_SECONDS = 240  # the API server ends a watch after this; the agent then resumes from its version


def follow_configmap(api: Any, namespace: str, name: str, latest: Latest, stop: threading.Event) -> None:
    """Get, then watch the one ConfigMap from that version on; get again only when the
    version is gone (410) or the connection broke."""
    import pykube
    import requests

    # The watch stays open up to WATCH_SECONDS with no byte when nothing changes: a read timeout
    # of its own, or the client's 10 s default breaks it (and re-lists) every 10 s.
    watch_api = pykube.HTTPClient(api.config, timeout=(10, WATCH_SECONDS + 30))
    query = pykube.ConfigMap.objects(watch_api, namespace=namespace).filter(field_selector={"metadata.name": name})
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
            for event in query.watch(since=version, params={"timeoutSeconds": WATCH_SECONDS,
                                                             "allowWatchBookmarks": "true"}):
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


def print_report(annotations: Mapping[str, str]) -> None:
    """Offline (--source-dir), the reports go to stdout: `applied-hash <hash>`."""
    for key, value in sorted(annotations.items()):
        print(f"{key.split('/')[-1]} {value}", flush=True)


# -- the loop -----------------------------------------------------------------------------

class Converging(Protocol):
    def converge(self, cm: ConfigMapView) -> Any: ...


def run(agent: Converging, latest: Latest, stop: threading.Event, *, resync: float, retry: float,
        max_backoff: float = 5.0) -> None:
    """Apply each new snapshot at once; look again every `resync` seconds (the process may have
    restarted, its state changed), every `retry` seconds while the decision says it is waiting,
    with backoff after errors."""
    seen = 0
    delay = retry
    failures = 0
    last = float("-inf")
    while not stop.is_set():
        # wake at least twice a second, so that a stop request is noticed quickly
        version, cm = latest.wait_newer(seen, timeout=min(delay, 0.5))
        due = version != seen or time.monotonic() - last >= delay
        seen = version
        if cm is None or not due or stop.is_set():
            continue
        last = time.monotonic()
        try:
            decision = agent.converge(cm)
        except Exception as exc:  # noqa: BLE001 (process, file, API errors: the loop must go on)
            failures += 1
            delay = min(retry * 2 ** failures, max_backoff)
            log.warning("could not apply the configuration (retry in %.1fs): %s", delay, exc)
            continue
        failures = 0
        waiting = getattr(decision, "waiting", None)
        if waiting:
            log.debug("waiting: %s", waiting)
        delay = retry if waiting else resync
        # an agent with work on a clock of its own (latency weighting) says when it is due
        recheck = getattr(decision, "recheck", None)
        if recheck is not None:
            delay = min(delay, max(recheck, retry))


def add_source_arguments(parser: Any, reports: str) -> None:
    """The flags `serve` reads: where the ConfigMap comes from and where reports go."""
    parser.add_argument("--configmap", help="the pool's ConfigMap")
    parser.add_argument("--namespace", help="its namespace (and the pod's)")
    parser.add_argument("--pod", help=f"this pod's name: {reports} go into its annotations")
    parser.add_argument("--kubeconfig", help="default: in-cluster, else KUBECONFIG")
    parser.add_argument("--source-dir", help="read the ConfigMap's files from this directory instead of the API "
                        "(offline use and tests; reports are printed, not annotated)")
    parser.add_argument("--once", action="store_true", help="apply the current configuration, report, and exit")
    parser.add_argument("-v", "--verbose", action="store_true")


def serve(args: Any, build: Callable[[Report], Converging], files: Iterable[str], parser: Any, *,
          resync: float, retry: float) -> int:
    """An agent's main: the ConfigMap from the API (or --source-dir), --once, or the loop.

    `args` carries configmap, namespace, pod, kubeconfig, source_dir and once; `build` makes
    the agent around the function that reports (pod annotations, or stdout offline).
    """
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    latest = Latest()
    files = tuple(files)
    source: Callable[[], None]
    fetch_once: Callable[[], ConfigMapView]
    if args.source_dir:
        report: Report = print_report
        source = functools.partial(follow_dir, args.source_dir, files, latest, stop)
        fetch_once = functools.partial(read_dir, args.source_dir, files)
    else:
        missing = [flag for flag, value in (("--configmap", args.configmap), ("--namespace", args.namespace),
                                            ("--pod", args.pod)) if not value]
        if missing:
            parser.error(f"{', '.join(missing)} required (or --source-dir)")
        api = client(args.kubeconfig)
        report = functools.partial(annotate_pod, api, args.namespace, args.pod)
        source = functools.partial(follow_configmap, api, args.namespace, args.configmap, latest, stop)
        fetch_once = functools.partial(read_configmap, api, args.namespace, args.configmap)
    agent = build(report)
    if args.once:
        try:
            decision = agent.converge(fetch_once())
        except Exception as exc:  # noqa: BLE001 (reported as the exit status)
            log.error("%s", exc)
            return 1
        if getattr(decision, "waiting", None):
            log.info("not fully applied: %s", decision.waiting)
            return 3
        return 0
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=source, name="configmap-source", daemon=True).start()
    run(agent, latest, stop, resync=resync, retry=retry)
    return 0
