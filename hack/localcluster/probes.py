"""Container probes (tcpSocket, httpGet, exec) with the kubelet's thresholds and periods."""

from __future__ import annotations

import dataclasses
import http.client
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any


def resolve_port(port: int | str, container: Mapping[str, Any]) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"container {container['name']} has no port named {port}")


def check(probe: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str,
          run_exec: Callable[[list[str], float], int]) -> bool:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            with socket.create_connection((spec.get("host") or pod_ip, resolve_port(spec["port"], container)),
                                          timeout=timeout):
                return True
        if "httpGet" in probe:
            spec = probe["httpGet"]
            conn_class = http.client.HTTPSConnection if spec.get("scheme") == "HTTPS" else http.client.HTTPConnection
            conn = conn_class(spec.get("host") or pod_ip, resolve_port(spec["port"], container), timeout=timeout)
            try:
                headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
                conn.request("GET", spec.get("path") or "/", headers=headers)
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        if "exec" in probe:
            return run_exec(list(probe["exec"]["command"]), timeout) == 0
    except (OSError, ValueError, http.client.HTTPException, subprocess.TimeoutExpired):
        return False
    return False


@dataclasses.dataclass
class ProbeState:
    """When a probe runs next and how many results in a row it has seen."""

    probe: Mapping[str, Any]
    started: float
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    result: bool | None = None

    def __post_init__(self) -> None:
        self.next_at = self.started + float(self.probe.get("initialDelaySeconds") or 0)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> bool | None:
        """Feeds one result; returns the probe's verdict once a threshold is crossed."""
        self.next_at = now + float(self.probe.get("periodSeconds") or 10)
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold") or 1):
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= int(self.probe.get("failureThreshold") or 3):
                self.result = False
        return self.result


def monotonic() -> float:
    return time.monotonic()
