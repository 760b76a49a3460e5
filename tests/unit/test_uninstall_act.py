"""`hakeeper uninstall`'s steps (uninstall/act.py) in order, against objects held in memory
with a fake clock: the operator stopped before anything is restored, what a policy shed put
back with the operator's own restore, the finalizers removed, a deadline that fails loudly.
The same steps against a real cluster: tests/e2e/test_uninstall.py."""

from __future__ import annotations

import copy

import pytest

from hakeeper.api.meta import (
    FINALIZER,
    KEDA_PAUSED_REPLICAS_ANNOTATION,
    ORIGINAL_REPLICAS_ANNOTATION,
    PAUSED_BY_ANNOTATION,
    SHED_BY_ANNOTATION,
    SHED_TIER_ANNOTATION,
)
from hakeeper.platform.kube import ApiError
from hakeeper.uninstall.act import Report, Uninstall, UninstallError

SELECTOR = {"app.kubernetes.io/name": "hakeeper", "app.kubernetes.io/instance": "hakeeper"}


class Memory:
    """The few Kube verbs the uninstall uses, over objects in memory; `pods_for` operator pods
    are listed for that many reads after the scale-down (they take time to terminate)."""

    def __init__(self, pods_for: int = 2, keda: bool = False) -> None:
        self.keda = keda
        self.calls: list[str] = []
        self.events: list[dict] = []
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.pods_for = pods_for
        self.add("Deployment", "hakeeper-system", "hakeeper", spec={"replicas": 1, "selector": {"matchLabels": SELECTOR}})
        self.add("Deployment", "shop", "batch", spec={"replicas": 0}, annotations={
            SHED_BY_ANNOTATION: "shop/peak", ORIGINAL_REPLICAS_ANNOTATION: "3", SHED_TIER_ANNOTATION: "batch"})
        self.add("Deployment", "shop", "web", spec={"replicas": 2})
        for kind, name in (("LoadBalancerPool", "web"), ("ReplicatedDatabase", "db"), ("DegradationPolicy", "peak")):
            self.add(kind, "shop", name, finalizers=[FINALIZER])

    def add(self, kind: str, namespace: str, name: str, spec: dict | None = None, annotations: dict | None = None,
            finalizers: list[str] | None = None) -> None:
        meta = {"namespace": namespace, "name": name, "resourceVersion": "1", "annotations": annotations or {},
                "finalizers": finalizers or []}
        self.objects[(kind, namespace, name)] = {"kind": kind, "metadata": meta, "spec": spec or {}}

    def get(self, kind, namespace, name):
        self.calls.append(f"get {kind} {namespace}/{name}")
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def list(self, kind, namespace=None, *, label_selector=None):
        if kind == "ScaledObject" and not self.keda:
            raise ApiError(404, "Not Found")  # KEDA not installed
        if kind == "Pod":
            self.calls.append(f"list pods {label_selector}")
            stopped = self.objects[("Deployment", "hakeeper-system", "hakeeper")]["spec"]["replicas"] == 0
            if stopped:
                self.pods_for -= 1
            return [{"metadata": {"name": "hakeeper-abc"}}] if not stopped or self.pods_for >= 0 else []
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and namespace in (None, ns)]

    def create(self, obj):
        self.calls.append(f"create {obj['kind']} {obj['metadata']['namespace']}/{obj['involvedObject']['name']}")
        self.events.append(obj)
        return obj

    def patch(self, kind, namespace, name, body, *, subresource=None):
        self.calls.append(f"patch {kind} {namespace}/{name}")
        obj = self.objects[(kind, namespace, name)]
        meta = body.get("metadata") or {}
        if meta.get("resourceVersion") not in (None, obj["metadata"]["resourceVersion"]):
            raise ApiError(409, "Conflict")
        for key, value in (meta.get("annotations") or {}).items():
            if value is None:
                obj["metadata"]["annotations"].pop(key, None)
            else:
                obj["metadata"]["annotations"][key] = value
        if "finalizers" in meta:
            obj["metadata"]["finalizers"] = meta["finalizers"]
        obj["spec"].update(body.get("spec") or {})
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(obj)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _uninstall(kube: Memory, clock: Clock) -> Uninstall:
    return Uninstall(kube, None, Report(), clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_stops_the_operator_then_restores_then_removes_finalizers():
    kube, clock = Memory(pods_for=2), Clock()
    report = _uninstall(kube, clock).run(("hakeeper-system", "hakeeper"), timeout=60)
    patches = [c for c in kube.calls if c.startswith("patch")]
    assert patches == ["patch Deployment hakeeper-system/hakeeper", "patch Deployment shop/batch",
                       "patch LoadBalancerPool shop/web", "patch ReplicatedDatabase shop/db",
                       "patch DegradationPolicy shop/peak"]
    # nothing restored while an operator pod was still there
    last_pod_list = max(i for i, c in enumerate(kube.calls) if c.startswith("list pods"))
    assert last_pod_list < kube.calls.index("patch Deployment shop/batch")
    assert "list pods app.kubernetes.io/instance=hakeeper,app.kubernetes.io/name=hakeeper" in kube.calls
    batch = kube.objects[("Deployment", "shop", "batch")]
    assert batch["spec"]["replicas"] == 3 and batch["metadata"]["annotations"] == {}
    assert kube.objects[("Deployment", "shop", "web")]["spec"]["replicas"] == 2  # never shed: untouched
    assert all(o["metadata"]["finalizers"] == [] for (k, _, _), o in kube.objects.items() if k != "Deployment")
    assert any("restored" in line and "shop/batch" in line for line in report.lines)
    (event,) = kube.events  # the owner of the Deployment is told, as the operator's restore tells
    assert (event["reason"], event["involvedObject"]["name"]) == ("Restored", "batch")


def test_run_twice_does_nothing_the_second_time():
    kube, clock = Memory(pods_for=0), Clock()
    _uninstall(kube, clock).run(("hakeeper-system", "hakeeper"), timeout=60)
    kube.calls.clear()
    _uninstall(kube, clock).run(("hakeeper-system", "hakeeper"), timeout=60)
    assert [c for c in kube.calls if c.startswith("patch")] == []


def test_an_operator_already_gone_is_stopped():
    kube, clock = Memory(), Clock()
    del kube.objects[("Deployment", "hakeeper-system", "hakeeper")]
    report = _uninstall(kube, clock).run(("hakeeper-system", "hakeeper"), timeout=60)
    assert "not found: nothing to stop" in report.lines[0]


def test_pods_that_never_go_fail_at_the_deadline_before_anything_is_restored():
    kube, clock = Memory(pods_for=10_000), Clock()
    with pytest.raises(UninstallError, match="stopping the operator: not done in time: hakeeper-abc"):
        _uninstall(kube, clock).run(("hakeeper-system", "hakeeper"), timeout=30)
    assert 30 <= clock.now <= 31
    assert kube.objects[("Deployment", "shop", "batch")]["spec"]["replicas"] == 0  # left as it was: retry later


def test_a_keda_pause_is_resumed_before_the_replicas_come_back_also_for_a_deployment_no_longer_shed():
    kube, clock = Memory(pods_for=0, keda=True), Clock()
    paused = {KEDA_PAUSED_REPLICAS_ANNOTATION: "0", PAUSED_BY_ANNOTATION: "shop/peak"}
    kube.add("ScaledObject", "shop", "batch-so", spec={"scaleTargetRef": {"name": "batch"}}, annotations=dict(paused))
    # a pause left behind for a Deployment someone restored by hand: resumed as well
    kube.add("ScaledObject", "shop", "web-so", spec={"scaleTargetRef": {"name": "web"}}, annotations=dict(paused))
    kube.add("ScaledObject", "shop", "mine", spec={"scaleTargetRef": {"name": "other"}},
             annotations={KEDA_PAUSED_REPLICAS_ANNOTATION: "1"})  # someone else's pause: left alone
    _uninstall(kube, clock).run(("hakeeper-system", "hakeeper"), timeout=60)
    patches = [c for c in kube.calls if c.startswith("patch")]
    assert patches.index("patch ScaledObject shop/batch-so") < patches.index("patch Deployment shop/batch")
    assert "patch ScaledObject shop/web-so" in patches and "patch ScaledObject shop/mine" not in patches
    for name in ("batch-so", "web-so"):
        assert kube.objects[("ScaledObject", "shop", name)]["metadata"]["annotations"] == {}
    assert kube.objects[("Deployment", "shop", "batch")]["spec"]["replicas"] == 3
