"""The test node agent: a kubelet and a scheduler, reduced to what the e2e tier needs.

It registers Nodes and keeps their Leases fresh, binds pending pods to a Node that fits
(nodeSelector, required node affinity), and runs each pod's containers as local
processes (runtimes.py) on the pod's own loopback IP, in a sandbox with its volumes
(sandbox.py). It probes them like the kubelet, restarts them by the pod's restartPolicy,
and patches the pod status (podIP, phase, conditions, container states), so the controller
manager's Deployments, StatefulSets, Services and EndpointSlices behave as in a cluster.
A killed process makes its pod NotReady; a deleted pod has its processes stopped.
"""

from __future__ import annotations

import datetime
import logging
import os
import pathlib
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

from . import addresses, podstatus, probes, runtimes
from .storage import Provisioner
from .api import Api, ApiError
from .sandbox import Sandbox, VolumeError, field_value, kill_group

log = logging.getLogger("localcluster.nodeagent")
HOST_IP = "127.0.0.1"
LOOP_SECONDS = 0.2
BACKOFF_FIRST, BACKOFF_MAX = 10.0, 80.0
"""The kubelet waits 10s before the first restart (then doubles, capped at 300s): a crashed
database primary stays down long enough for a failover, as on a real node."""
MAX_GRACE_SECONDS = 10


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fits(pod: Mapping[str, Any], node_name: str, labels: Mapping[str, str]) -> bool:
    """nodeSelector and required node affinity (labels and metadata.name), as the scheduler reads them."""
    spec = pod["spec"]
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    fields = {"metadata.name": node_name}

    def term_ok(term: Mapping[str, Any]) -> bool:
        for source, reqs in ((labels, term.get("matchExpressions") or []), (fields, term.get("matchFields") or [])):
            for req in reqs:
                value, op, values = source.get(req["key"]), req["operator"], req.get("values") or []
                ok = {"In": value in values, "NotIn": value not in values, "Exists": value is not None,
                      "DoesNotExist": value is None}.get(op, False)
                if not ok:
                    return False
        return True

    return any(term_ok(t) for t in required.get("nodeSelectorTerms") or [])


class Container:
    """One container's process, restarts and probes."""

    def __init__(self, spec: Mapping[str, Any], *, init: bool):
        self.spec = spec
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        self.state = podstatus.ContainerState(spec["name"], spec.get("image", ""), init=init, sidecar=self.sidecar)
        self.process: subprocess.Popen | None = None
        self.restart_at = 0.0
        self.backoff = BACKOFF_FIRST
        self.probes: dict[str, probes.ProbeState] = {}
        self.done = False
        """Exited and not to be restarted (by the restart policy)."""
        self.started_mono = 0.0

    @property
    def name(self) -> str:
        return self.spec["name"]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, sandbox: Sandbox, env: dict[str, str]) -> None:
        command = runtimes.command_for(self.spec)
        if command is None:
            self.state.reason = "ImageNotRunnableLocally"
            self.state.message = (f"no local program stands in for image {self.spec.get('image')!r} "
                                  f"(known: {', '.join(sorted(runtimes.RUNTIMES))})")
            return
        argv, runtime_env = command
        # the image's own environment (e.g. its PATH) beats the node's, the container's env beats both
        declared = {item["name"] for item in self.spec.get("env") or []}
        full_env = {**env, **{k: v for k, v in runtime_env.items() if k not in declared}}
        argv = [runtimes.expand(a, full_env) for a in argv]
        self.process = sandbox.spawn(argv, self.spec, full_env)
        now = self.started_mono = time.monotonic()
        self.restart_at = 0.0
        self.state.phase, self.state.reason, self.state.message = "running", "", ""
        self.state.pid = self.process.pid
        self.state.started_at = now_iso()
        self.state.ready = False
        self.state.started = "startupProbe" not in self.spec
        self.probes = {kind: probes.ProbeState(self.spec[kind], now)
                       for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in self.spec}

    def reap(self) -> bool:
        """True when the process has just exited; records its termination."""
        if self.process is None or self.process.poll() is None:
            return False
        code = self.process.returncode
        code = 128 - code if code < 0 else code
        self.state.phase, self.state.exit_code = "terminated", code
        self.state.reason = "Completed" if code == 0 else "Error"
        self.state.finished_at = now_iso()
        self.state.ready = False
        self.state.last_termination = {"exitCode": code, "reason": self.state.reason,
                                       "startedAt": self.state.started_at, "finishedAt": self.state.finished_at}
        self.process = None
        return True

    def schedule_restart(self, ran_for: float) -> None:
        if ran_for > 60:
            self.backoff = BACKOFF_FIRST
        self.restart_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def stop(self, grace: float) -> None:
        if self.process is None:
            return
        kill_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            kill_group(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def run_probes(self, pod_ip: str, sandbox: Sandbox) -> str | None:
        """Runs due probes; returns "restart" when the liveness probe failed."""
        now = time.monotonic()

        def run_exec(command: list[str], timeout: float) -> int:
            argv = sandbox.wrap(command, self.spec)
            return subprocess.run(argv, capture_output=True, timeout=timeout).returncode

        startup = self.probes.get("startupProbe")
        if startup and not self.state.started:
            if startup.due(now):
                verdict = startup.record(probes.check(startup.probe, self.spec, pod_ip, run_exec), now)
                if verdict is True:
                    self.state.started = True
                elif verdict is False:
                    return "restart"
            return None
        readiness = self.probes.get("readinessProbe")
        if readiness is None:
            self.state.ready = self.state.started
        elif readiness.due(now):
            verdict = readiness.record(probes.check(readiness.probe, self.spec, pod_ip, run_exec), now)
            self.state.ready = bool(verdict)
        liveness = self.probes.get("livenessProbe")
        if liveness and liveness.due(now):
            if liveness.record(probes.check(liveness.probe, self.spec, pod_ip, run_exec), now) is False:
                return "restart"
        return None


class PodRunner(threading.Thread):
    """Runs one pod until it is deleted (or the agent stops)."""

    def __init__(self, agent: NodeAgent, pod: dict, pod_ip: str):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.pod_ip = pod_ip
        self.sandbox = Sandbox(agent.root, pod, agent.api)
        spec = pod["spec"]
        self.containers = [Container(c, init=True) for c in spec.get("initContainers") or []] + [
            Container(c, init=False) for c in spec.get("containers") or []]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.start_time = now_iso()
        self.stopping = threading.Event()
        self.delete_after_stop = False
        self.finished = threading.Event()
        self._published: dict | None = None
        self.path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"

    def container(self, name: str) -> Container:
        return next(c for c in self.containers if c.name == name)

    def request_stop(self, delete: bool) -> None:
        self.delete_after_stop = self.delete_after_stop or delete
        self.stopping.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must not take the whole agent down
            log.exception("pod %s failed", self.name)
        finally:
            self._stop_all()
            if self.delete_after_stop:
                uid = self.pod["metadata"]["uid"]
                try:
                    self.agent.api.delete(self.path, {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
                except ApiError as error:
                    if error.status != 409:  # 409: already replaced by a pod of the same name
                        log.warning("deleting %s: %s", self.path, error)
            self.sandbox.remove()
            self.finished.set()

    def _env(self, container: Mapping[str, Any]) -> dict[str, str]:
        meta = self.pod["metadata"]
        pod = {**self.pod, "status": {**(self.pod.get("status") or {}), "podIP": self.pod_ip, "hostIP": HOST_IP}}
        ports = container.get("ports") or []
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": "/root",
            "HOSTNAME": meta["name"],
            "KUBERNETES_SERVICE_HOST": self.agent.api_host, "KUBERNETES_SERVICE_PORT": str(self.agent.api_port),
            # not Kubernetes: what the local runtimes' default commands refer to
            "POD_IP": self.pod_ip, "POD_NAME": meta["name"], "POD_NAMESPACE": meta["namespace"],
            "PORT": str(ports[0]["containerPort"]) if ports else "8080",
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.sandbox._config_map({"name": source["configMapRef"]["name"],
                                                 "optional": source["configMapRef"].get("optional")})
            else:
                data = self.sandbox._secret({"name": source["secretRef"]["name"],
                                             "optional": source["secretRef"].get("optional")})
            env.update({prefix + k: v.decode() for k, v in data.items()})
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = runtimes.expand(item["value"], env)
            elif "valueFrom" in item:
                ref = item["valueFrom"]
                if "fieldRef" in ref:
                    env[item["name"]] = field_value(pod, ref["fieldRef"]["fieldPath"])
                elif "secretKeyRef" in ref:
                    data = self.sandbox._secret({"name": ref["secretKeyRef"]["name"],
                                                 "optional": ref["secretKeyRef"].get("optional")})
                    if ref["secretKeyRef"]["key"] in data:
                        env[item["name"]] = data[ref["secretKeyRef"]["key"]].decode()
                    elif not ref["secretKeyRef"].get("optional"):
                        raise VolumeError(f"secret {ref['secretKeyRef']['name']} has no key {ref['secretKeyRef']['key']}")
                elif "configMapKeyRef" in ref:
                    data = self.sandbox._config_map({"name": ref["configMapKeyRef"]["name"],
                                                     "optional": ref["configMapKeyRef"].get("optional")})
                    if ref["configMapKeyRef"]["key"] in data:
                        env[item["name"]] = data[ref["configMapKeyRef"]["key"]].decode()
            else:
                env[item["name"]] = ""
        return env

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sandbox.prepare()
                break
            except (VolumeError, ApiError) as error:
                for c in self.containers:
                    c.state.reason, c.state.message = "ContainerCreating", str(error)
                self._publish()
                self.stopping.wait(1)
        while not self.stopping.is_set():
            self._step()
            self._publish()
            self.stopping.wait(LOOP_SECONDS)

    def _ensure(self, c: Container) -> None:
        """Starts c, or restarts it when its restart policy and back-off allow."""
        if c.running():
            return
        if c.done:
            return
        if c.reap():
            failed = c.state.exit_code != 0
            if c.sidecar:
                restart = True
            elif c.state.init:
                restart = failed and self.restart_policy != "Never"
            else:
                restart = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and failed)
            if not restart:
                c.done = True
                return
            c.schedule_restart(time.monotonic() - c.started_mono)
            c.state.restart_count += 1
            c.state.phase, c.state.reason = "waiting", "CrashLoopBackOff"
            return
        if time.monotonic() < c.restart_at:
            return
        try:
            env = self._env(c.spec)
        except (VolumeError, ApiError) as error:
            c.state.reason, c.state.message = "CreateContainerConfigError", str(error)
            return
        c.start(self.sandbox, env)

    def _step(self) -> None:
        for c in self.containers:
            if c.state.init and not c.sidecar:
                self._ensure(c)
                if c.done and c.state.exit_code == 0:
                    continue
                return  # a regular init container blocks everything after it until it succeeds
            self._ensure(c)
            if c.running() and c.run_probes(self.pod_ip, self.sandbox) == "restart":
                c.stop(self._grace())
                # reaped (and restarted) by the next _ensure
            if c.sidecar and not c.state.started:
                return  # a sidecar must have started before the containers after it

    def _grace(self) -> float:
        return min(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)), MAX_GRACE_SECONDS)

    def _stop_all(self) -> None:
        grace = self._grace()
        # the main containers first, then the sidecars in reverse order, as the kubelet does
        for c in [c for c in self.containers if not c.state.init] + [c for c in reversed(self.containers) if c.sidecar]:
            c.stop(grace)

    def _publish(self) -> None:
        status = podstatus.pod_status(
            [c.state for c in self.containers], pod_ip=self.pod_ip, host_ip=HOST_IP, start_time=self.start_time,
            restart_policy=self.restart_policy, previous_conditions=(self._published or {}).get("conditions"),
            now=now_iso())
        if self._published is not None and podstatus.without_times(status) == podstatus.without_times(self._published):
            return
        try:
            self.agent.api.merge_patch(self.path + "/status", {"status": status})
            self._published = status
        except ApiError as error:
            if error.status == 404:
                self.stopping.set()
            else:
                log.warning("status of %s: %s", self.path, error)


class NodeAgent:
    def __init__(self, api: Api, root: pathlib.Path, *, nodes: tuple[str, ...] = ("hakeeper-local",),
                 api_host: str = "127.0.0.1", api_port: int = 443):
        self.api = api
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.nodes = nodes
        self.api_host, self.api_port = api_host, api_port
        self.runners: dict[str, PodRunner] = {}
        self.addresses = addresses.Pool()
        self.storage = Provisioner(api, self.root.parent / "volumes")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node-agent", daemon=True)
        self._next_heartbeat = 0.0
        self.errors = 0

    # --- what tests use -------------------------------------------------------------------
    def process(self, namespace: str, pod: str, container: str) -> subprocess.Popen | None:
        for runner in list(self.runners.values()):
            meta = runner.pod["metadata"]
            if (meta["namespace"], meta["name"]) == (namespace, pod):
                return runner.container(container).process
        return None

    def volume_path(self, namespace: str, pod: str, volume: str) -> pathlib.Path:
        """Where a pod's volume lives on this machine (e.g. an emptyDir holding a unix socket)."""
        for runner in list(self.runners.values()):
            meta = runner.pod["metadata"]
            if (meta["namespace"], meta["name"]) == (namespace, pod):
                return runner.sandbox.volumes[volume]
        raise KeyError(f"no pod {namespace}/{pod} runs here")

    def node_labels(self, node: str) -> dict[str, str]:
        return {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "hakeeper.io/local-node": "true"}

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for node in self.nodes:
            self._register(node)
        self.storage.install()
        self._heartbeat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        for runner in list(self.runners.values()):
            runner.request_stop(delete=False)
        for runner in list(self.runners.values()):
            runner.finished.wait(MAX_GRACE_SECONDS + 5)
        self.addresses.release_all()

    def _register(self, node: str) -> None:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": self.node_labels(node)}}
        try:
            self.api.post("/api/v1/nodes", body)
        except ApiError as error:
            if error.status != 409:
                raise
        capacity = {"cpu": "16", "memory": "32Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        self.api.merge_patch(f"/api/v1/nodes/{node}/status", {"status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": node}],
            "nodeInfo": {"kubeletVersion": "v0.0.0-hakeeper-local", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "local://processes",
                         "kernelVersion": os.uname().release, "osImage": "hakeeper local node",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        }})

    def _heartbeat(self) -> None:
        now = now_iso()
        for node in self.nodes:
            conditions = [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                           "lastTransitionTime": now} for t, s, r, m in (
                ("Ready", "True", "KubeletReady", "the hakeeper node agent is running"),
                ("MemoryPressure", "False", "KubeletHasSufficientMemory", ""),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure", ""),
                ("PIDPressure", "False", "KubeletHasSufficientPID", ""))]
            self.api.merge_patch(f"/api/v1/nodes/{node}/status", {"status": {"conditions": conditions}})
            lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
            spec = {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": micro_now()}
            if self.api.get_or_none(lease_path) is None:
                self.api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                              {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "metadata": {"name": node, "namespace": "kube-node-lease"}, "spec": spec})
            else:
                self.api.merge_patch(lease_path, {"spec": spec})
        self._next_heartbeat = time.monotonic() + 10

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
                self.storage.sync()
                if time.monotonic() >= self._next_heartbeat:
                    self._heartbeat()
            except Exception:  # the API server may be briefly away; keep going
                self.errors += 1
                log.exception("node agent sync")
            self._stop.wait(LOOP_SECONDS)

    def _sync(self) -> None:
        pods = self.api.get("/api/v1/pods")["items"]
        seen = set()
        for pod in pods:
            meta, spec = pod["metadata"], pod["spec"]
            node = spec.get("nodeName")
            if not node:
                self._schedule(pod)
                continue
            if node not in self.nodes:
                continue
            uid = meta["uid"]
            seen.add(uid)
            runner = self.runners.get(uid)
            if runner is None and not meta.get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
                    "Succeeded", "Failed"):
                # a hostNetwork pod shares the node's address, as on a real node
                ip = HOST_IP if spec.get("hostNetwork") else self.addresses.claim()
                runner = PodRunner(self, pod, ip)
                self.runners[uid] = runner
                runner.start()
            elif runner is None and meta.get("deletionTimestamp"):
                # never ran here (or ran before the agent restarted): nothing to stop
                self.api.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
            if runner is not None:
                runner.pod = {**runner.pod, "metadata": meta}
                if meta.get("deletionTimestamp"):
                    runner.request_stop(delete=True)
        for uid, runner in list(self.runners.items()):
            if uid not in seen:
                runner.request_stop(delete=False)
            if runner.finished.is_set():
                del self.runners[uid]
                if runner.pod_ip != HOST_IP:
                    self.addresses.release(runner.pod_ip)

    def _schedule(self, pod: Mapping[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if meta.get("deletionTimestamp") or spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        candidates = [n for n in self.nodes if fits(pod, n, self.node_labels(n))]
        if not candidates:
            return  # stays Pending, as with a scheduler that finds no node
        load = {n: 0 for n in candidates}
        for runner in self.runners.values():
            node = runner.pod["spec"].get("nodeName")
            if node in load:
                load[node] += 1
        node = min(candidates, key=lambda n: (load[n], n))
        try:
            self.api.post(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"], "uid": meta["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
        except ApiError as error:
            if error.status not in (404, 409):
                raise
