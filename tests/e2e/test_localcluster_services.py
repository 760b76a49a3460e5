"""Service ClusterIPs work in the local cluster: connections reach the ready pods (serviceproxy.py).

Clients here connect to <ClusterIP>:<port> from this machine, as a pod would. Each new
connection is one HTTP request; the backend names itself in the X-Backend header. The last
tests check the proxy's pure parts (which endpoints, which one next) without a cluster.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import itertools
import os
import re
import socket
import subprocess
import time

import pytest

from localcluster import addresses
from localcluster.serviceproxy import Balancer, Route, routes

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.localcluster]
BACKEND_IMAGE = "registry.local/hakeeper/test-http-backend:1"
SERVICE_PORT = 80


def _unhealthy_flag(pod: str) -> str:
    """While this file exists the pod's /healthz answers 503, so its readiness probe fails."""
    return f"/tmp/hakeeper-e2e-unhealthy-{pod}"


def _deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "web", "image": BACKEND_IMAGE, "ports": [{"name": "http", "containerPort": 8080}],
                "args": ["--address", "$(POD_IP)", "--port", "8080", "--name", "$(POD_NAME)",
                         "--unhealthy-file", _unhealthy_flag("$(POD_NAME)")],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1,
                                   "failureThreshold": 1},
            }]}}},
    }


def _service(name: str, app: str | None = None, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app or name},
                     "ports": [{"name": "web", "port": SERVICE_PORT, "targetPort": "http"}], **spec}}


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _ready_pods(cluster, namespace: str, app: str) -> set[str]:
    pods = cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return {p["metadata"]["name"] for p in pods if _ready(p) and not p["metadata"].get("deletionTimestamp")}


def _cluster_ip(cluster, namespace: str, service: str) -> str:
    return cluster.get("service", service, "-n", namespace)["spec"]["clusterIP"]


def _request(ip: str, source: str | None = None) -> tuple[int, str | None, str]:
    """One GET on a new connection: status, X-Backend header, body."""
    connection = http.client.HTTPConnection(ip, SERVICE_PORT, timeout=3,
                                            source_address=(source, 0) if source else None)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        answer = connection.getresponse()
        return answer.status, answer.getheader("X-Backend"), answer.read().decode().strip()
    finally:
        connection.close()


def _ask(ip: str, source: str | None = None) -> str:
    """The name of the pod that answered a request on a new connection."""
    status, backend, body = _request(ip, source)
    assert status == 200 and backend == body, (status, backend, body)
    return body


def _tally(ip: str, connections: int, source: str | None = None) -> collections.Counter:
    return collections.Counter(_ask(ip, source) for _ in range(connections))


def _tally_or_none(ip: str, connections: int, source: str | None = None) -> collections.Counter | None:
    """The tally, or None unless every connection reached a backend pod (e.g. while the proxy catches up)."""
    tally: collections.Counter = collections.Counter()
    for _ in range(connections):
        try:
            status, backend, body = _request(ip, source)
        except (OSError, http.client.HTTPException):  # refused or reset
            return None
        if status != 200 or backend != body:  # not on lo yet: the address leads off this machine
            return None
        tally[backend] += 1
    return tally


def _reaches(ip: str, pods: set[str], connections: int) -> collections.Counter | None:
    """The tally when `connections` new connections reach exactly `pods`, else None."""
    tally = _tally_or_none(ip, connections)
    return tally if tally and set(tally) == pods else None


def _backends_behind_service(cluster, namespace: str, name: str, replicas: int, **spec: object) -> tuple[str, set[str]]:
    """A Deployment and a Service named `name`; returns the ClusterIP once it reaches every ready pod."""
    cluster.apply(_deployment(name, replicas), "-n", namespace)
    cluster.apply(_service(name, **spec), "-n", namespace)
    pods = wait_for(lambda: (lambda ready: ready if len(ready) == replicas else None)(
        _ready_pods(cluster, namespace, name)), 60, f"{replicas} ready {name} pods")
    ip = _cluster_ip(cluster, namespace, name)
    if spec.get("sessionAffinity") != "ClientIP":
        wait_for(lambda: _reaches(ip, pods, 3 * replicas), 30, f"{ip} to reach {sorted(pods)}")
    return ip, pods


def _refused_quickly(ip: str) -> bool:
    started = time.monotonic()
    try:
        with socket.create_connection((ip, SERVICE_PORT), timeout=3) as connection:
            connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return connection.recv(100) == b"" and time.monotonic() - started < 1  # closed at once also counts
    except (ConnectionRefusedError, ConnectionResetError):
        return time.monotonic() - started < 1
    except OSError:
        return False


def test_connections_to_a_cluster_ip_go_round_robin_to_every_ready_pod(cluster, namespace):
    ip, pods = _backends_behind_service(cluster, namespace, "rr", 3)
    assert ip.startswith("10.96.") and ip in addresses.present()  # the cluster's own service /24
    tally = _tally(ip, 30)
    assert set(tally) == pods
    assert all(8 <= n <= 12 for n in tally.values()), f"not about a third each: {tally}"


def test_scaling_down_leaves_only_the_remaining_pod_in_rotation(cluster, namespace):
    ip, _ = _backends_behind_service(cluster, namespace, "scale", 3)
    cluster.kubectl("scale", "deployment", "scale", "--replicas=1", "-n", namespace)
    remaining = wait_for(lambda: (lambda ready: ready if len(ready) == 1 else None)(
        _ready_pods(cluster, namespace, "scale")), 30, "one pod left")
    wait_for(lambda: _reaches(ip, remaining, 6), 30, f"only {remaining} answering")
    assert _tally(ip, 12) == {next(iter(remaining)): 12}


def test_a_pod_that_turns_not_ready_leaves_the_rotation_and_comes_back(cluster, namespace):
    ip, pods = _backends_behind_service(cluster, namespace, "flaky", 3)
    sick = sorted(pods)[0]
    try:
        open(_unhealthy_flag(sick), "w").close()
        wait_for(lambda: _reaches(ip, pods - {sick}, 6), 30, f"{sick} out of the rotation")
        assert set(_tally(ip, 12)) == pods - {sick}
        assert sick in {p["metadata"]["name"] for p in cluster.get("pods", "-n", namespace)["items"]}, \
            "the pod must still exist: only its readiness changed"
    finally:
        os.unlink(_unhealthy_flag(sick))
    wait_for(lambda: _reaches(ip, pods, 9), 30, f"{sick} back in the rotation")


def test_client_ip_affinity_keeps_each_client_on_one_pod(cluster, namespace):
    ip, pods = _backends_behind_service(cluster, namespace, "sticky", 3, sessionAffinity="ClientIP")
    clients = ("127.0.0.2", "127.0.0.3", "127.0.0.4")  # distinct source addresses: distinct client IPs
    fresh = (f"127.0.{n // 250 + 1}.{n % 250 + 1}" for n in itertools.count())

    def new_clients_reach_every_pod():  # each probe from unused addresses, so the clients above start fresh
        seen = [_tally_or_none(ip, 1, next(fresh)) for _ in pods]
        return all(seen) and set().union(*seen) == pods

    wait_for(new_clients_reach_every_pod, 30, f"{ip} to reach {sorted(pods)}")
    chosen = {}
    for client in clients:
        tally = _tally(ip, 10, client)
        assert len(tally) == 1, f"{client} moved between pods: {tally}"
        chosen[client] = next(iter(tally))
    assert set(chosen.values()) == pods, f"new clients are still spread round robin: {chosen}"
    # when its pod turns NotReady the client moves, and then sticks to its new pod
    client = clients[0]
    old = chosen[client]
    try:
        open(_unhealthy_flag(old), "w").close()

        def moved() -> str | None:
            tally = _tally_or_none(ip, 1, client)
            return next(iter(tally)) if tally and old not in tally else None

        new = wait_for(moved, 30, f"{client} to leave {old}")
        assert _tally(ip, 10, client) == {new: 10}
    finally:
        os.unlink(_unhealthy_flag(old))


def test_a_deleted_service_takes_its_address_off_lo(cluster, namespace):
    ip, pods = _backends_behind_service(cluster, namespace, "gone", 1)
    assert ip in addresses.present()
    cluster.kubectl("delete", "service", "gone", "-n", namespace)
    wait_for(lambda: ip not in addresses.present(), 20, f"{ip} off lo")
    try:  # the address now leads off this machine, wherever its default route goes
        backend = _request(ip)[1]
    except (OSError, http.client.HTTPException):
        backend = None
    assert backend not in pods


def test_a_service_without_ready_endpoints_refuses_at_once(cluster, namespace):
    cluster.apply(_service("empty", app="nothing-has-this-label"), "-n", namespace)
    ip = _cluster_ip(cluster, namespace, "empty")
    wait_for(lambda: ip in addresses.present(), 20, f"{ip} on lo")
    started = time.monotonic()
    with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
        _ask(ip)
    assert time.monotonic() - started < 1, "a Service without endpoints must refuse, not hang"
    # and when the only pod of a Service turns NotReady, the same
    ip, pods = _backends_behind_service(cluster, namespace, "lonely", 1)
    pod = next(iter(pods))
    try:
        open(_unhealthy_flag(pod), "w").close()
        wait_for(lambda: _refused_quickly(ip), 30, f"{ip} to refuse once {pod} is not ready")
    finally:
        os.unlink(_unhealthy_flag(pod))
    wait_for(lambda: _reaches(ip, pods, 2), 30, f"{pod} answering again")


def test_publish_not_ready_addresses_keeps_a_not_ready_pod_reachable(cluster, namespace):
    ip, pods = _backends_behind_service(cluster, namespace, "early", 1)
    cluster.apply(_service("early-all", app="early", publishNotReadyAddresses=True), "-n", namespace)
    all_ip = _cluster_ip(cluster, namespace, "early-all")
    wait_for(lambda: _reaches(all_ip, pods, 2), 30, f"{all_ip} answering")
    pod = next(iter(pods))
    try:
        open(_unhealthy_flag(pod), "w").close()
        wait_for(lambda: _refused_quickly(ip), 30, f"the plain Service {ip} to refuse")
        assert not _ready(cluster.get("pod", pod, "-n", namespace))
        assert _tally(all_ip, 5) == {pod: 5}
    finally:
        os.unlink(_unhealthy_flag(pod))


def test_a_half_closed_client_still_gets_the_whole_answer(cluster, namespace):
    ip, pods = _backends_behind_service(cluster, namespace, "half", 1)
    with socket.create_connection((ip, SERVICE_PORT), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.0\r\nHost: half\r\n\r\n")
        connection.shutdown(socket.SHUT_WR)  # "no more requests", not "hang up"
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 200 ", head) and body.decode().strip() in pods, answer


def test_keep_alive_connections_stay_on_their_pod_under_concurrent_load(cluster, namespace):
    ip, pods = _backends_behind_service(cluster, namespace, "busy", 3)

    def client(_: int) -> collections.Counter:
        connection = http.client.HTTPConnection(ip, SERVICE_PORT, timeout=10)
        try:
            seen = collections.Counter()
            for _ in range(50):
                connection.request("GET", "/")
                answer = connection.getresponse()
                seen[answer.read().decode().strip()] += answer.status == 200
            return seen
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        per_connection = list(pool.map(client, range(30)))
    assert all(sum(seen.values()) == 50 and len(seen) == 1 for seen in per_connection), per_connection
    spread = collections.Counter(next(iter(seen)) for seen in per_connection)
    assert set(spread) == pods and all(n == 10 for n in spread.values()), spread


def test_wrk_through_a_cluster_ip_sees_no_errors(cluster, namespace):
    ip, _ = _backends_behind_service(cluster, namespace, "wrk", 3)
    result = subprocess.run(["wrk", "-t2", "-c60", "-d3s", f"http://{ip}:{SERVICE_PORT}/"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    assert "Socket errors" not in report and "Non-2xx" not in report, report
    assert rate > 200, report  # the Python backends do ~2000/s here; far less means the proxy stalls
    assert _ask(ip)  # still answering afterwards


# --- the proxy's decisions, without a cluster ------------------------------------------------

def _slice(service: str, port_name: str, *endpoints: tuple[str, dict]) -> dict:
    return {"metadata": {"namespace": "ns", "name": f"{service}-x", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": c} for a, c in endpoints]}


def _svc(name: str, ip: str = "10.0.0.9", namespace: str = "ns", **spec: object) -> dict:
    return {"metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIP": ip, "type": "ClusterIP", "ports": [{"name": "web", "port": 80}], **spec}}


READY, NOT_READY = {"ready": True, "serving": True}, {"ready": False, "serving": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}


def test_routes_use_ready_endpoints_of_the_matching_port_name():
    pieces = [_slice("a", "web", ("10.244.0.2", READY), ("10.244.0.1", {}), ("10.244.0.3", NOT_READY)),
              _slice("a", "other", ("10.244.0.9", READY))]
    table = routes([_svc("a")], pieces)
    assert table[("10.0.0.9", 80)].endpoints == (("10.244.0.1", 8080), ("10.244.0.2", 8080))


def test_routes_fall_back_to_serving_terminating_endpoints_only_when_none_is_ready():
    both = [_slice("a", "web", ("10.244.0.1", READY), ("10.244.0.2", TERMINATING))]
    assert routes([_svc("a")], both)[("10.0.0.9", 80)].endpoints == (("10.244.0.1", 8080),)
    only = [_slice("a", "web", ("10.244.0.2", TERMINATING), ("10.244.0.3", NOT_READY))]
    assert routes([_svc("a")], only)[("10.0.0.9", 80)].endpoints == (("10.244.0.2", 8080),)


def test_routes_take_serving_endpoints_with_publish_not_ready_addresses():
    pieces = [_slice("a", "web", ("10.244.0.1", {"ready": False, "serving": True}))]
    assert routes([_svc("a")], pieces)[("10.0.0.9", 80)].endpoints == ()
    assert routes([_svc("a", publishNotReadyAddresses=True)], pieces)[("10.0.0.9", 80)].endpoints == (
        ("10.244.0.1", 8080),)


def test_routes_skip_the_api_service_headless_external_name_and_udp():
    services = [_svc("kubernetes", "10.0.0.1", namespace="default"), _svc("headless", "None"),
                {"metadata": {"namespace": "ns", "name": "ext"}, "spec": {"type": "ExternalName", "externalName": "x"}},
                _svc("dns", "10.0.0.10", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])]
    assert set(routes(services, [])) == {("10.0.0.10", 53)}


def test_affinity_holds_a_client_until_it_is_idle_for_the_timeout():
    endpoints = (("10.244.0.1", 8080), ("10.244.0.2", 8080), ("10.244.0.3", 8080))
    balancer = Balancer(Route("ns/a:web", "10.0.0.9", 80, endpoints, affinity_seconds=10))
    assert balancer.choose("c", now=0) == endpoints[0]
    assert balancer.choose("other", now=1) == endpoints[1]
    assert [balancer.choose("c", now=t) for t in (5, 14, 23)] == [endpoints[0]] * 3  # each use restarts the clock
    assert balancer.choose("c", now=34) == endpoints[2]  # idle 11 s: the next round robin choice
    assert balancer.choose("c", now=35, exclude={endpoints[2]}) == endpoints[0]  # its endpoint refused


def test_round_robin_skips_endpoints_that_refused_and_gives_up_when_all_did():
    endpoints = (("10.244.0.1", 8080), ("10.244.0.2", 8080), ("10.244.0.3", 8080))
    balancer = Balancer(Route("ns/a:web", "10.0.0.9", 80, endpoints))
    assert [balancer.choose("c", 0) for _ in range(4)] == [*endpoints, endpoints[0]]
    assert balancer.choose("c", 0, exclude={endpoints[1]}) == endpoints[2]
    assert balancer.choose("c", 0, exclude=set(endpoints)) is None
