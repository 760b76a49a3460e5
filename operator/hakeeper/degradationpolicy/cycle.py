"""One evaluation of a policy: read the triggers and the Deployments, decide, act, report.

Blocking code (prometheus-api-client and the Kubernetes client are synchronous); the
controller runs it in a worker thread. The truth about what is shed is on the Deployments
(their annotations); the status is a copy for people, and the memory of time windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hakeeper.api.common import parse_duration, rfc3339
from hakeeper.api.conditions import PolicyReason, Verdict
from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.degradationpolicy import keda
from hakeeper.degradationpolicy import status as status_
from hakeeper.degradationpolicy.act import (
    Scaler,
    cluster_patcher,
    cluster_scaled_object_patcher,
    conflict_message,
    hpas_by_target,
)
from hakeeper.degradationpolicy.decide import Memory, Reading, decide
from hakeeper.degradationpolicy.metrics import PrometheusSource
from hakeeper.degradationpolicy.observe import ClusterReader, SecretMissing
from hakeeper.degradationpolicy.targets import Outcome, Selection, Target, default_priority, select, shed_mark
from hakeeper.degradationpolicy.tenancy import Admission, admit
from hakeeper.platform.kube import ApiError, Kube


@dataclass(frozen=True)
class Evaluation:
    status: dict[str, Any]
    events: list[status_.Event]
    memory: Memory
    due: float
    """When the next evaluation is due (epoch seconds)."""


def policy_key(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def namespaces_of(spec: DegradationPolicySpec | None, body: Mapping[str, Any]) -> list[str]:
    """The namespaces the policy lists: spec.namespaces, or its own."""
    return list(spec.namespaces) if spec is not None and spec.namespaces else [body["metadata"]["namespace"]]


class Evaluator:
    """Evaluates policies against one cluster; safe to share between the policies' threads.
    trusted: policy namespaces the cluster admin lets shed anywhere (tenancy.admit)."""

    def __init__(self, reader: ClusterReader, scaler: Scaler, trusted: frozenset[str] = frozenset()) -> None:
        self.reader = reader
        self.scaler = scaler
        self.trusted = trusted
        self._sources: dict[str, PrometheusSource] = {}
        self._selections: dict[str, tuple[tuple[Any, ...], tuple[Mapping[str, Any], ...], Selection]] = {}
        """Per policy, the last selection from the watch's Deployments, with its inputs (_select)."""
        self._by_namespace: dict[str, tuple[Sequence[dict], dict[tuple[str, str], dict]]] = {}
        """Per namespace, the watch's Deployments as last given and keyed by (namespace, name):
        shared by the policies that cover it (_keyed)."""
        self._lock = threading.Lock()

    @classmethod
    def for_cluster(cls, kube: Kube, trusted: frozenset[str] = frozenset()) -> Evaluator:
        return cls(ClusterReader(kube), Scaler(cluster_patcher(kube), cluster_scaled_object_patcher(kube)), trusted)

    def admission(self, spec: DegradationPolicySpec, body: Mapping[str, Any]) -> Admission:
        """Where the policy may shed: its namespaces' labels read now (tenancy.admit)."""
        wanted = namespaces_of(spec, body)
        labels = {namespace: self.reader.namespace_labels(namespace) for namespace in wanted}
        return admit(body["metadata"]["namespace"], wanted, labels, self.trusted)

    # -- Prometheus ---------------------------------------------------------------------------
    def source(self, spec: DegradationPolicySpec, body: Mapping[str, Any]) -> PrometheusSource:
        """The policy's Prometheus client, rebuilt when its URL, timeout or credentials change."""
        namespace = body["metadata"]["namespace"]
        prom = spec.prometheus
        token = ca = None
        if prom.bearer_token_secret_ref:
            ref = prom.bearer_token_secret_ref
            token = self.reader.secret_key(namespace, ref.name, ref.key)
        if prom.ca_secret_ref:
            ca = self.reader.secret_key(namespace, prom.ca_secret_ref.name, prom.ca_secret_ref.key)
        config = (prom.url, parse_duration(prom.timeout), token, ca, prom.insecure_skip_verify)
        key = policy_key(body)
        with self._lock:
            current = self._sources.get(key)
            if current is None or current.config != config:
                if current is not None:
                    current.close()
                current = self._sources[key] = PrometheusSource(
                    prom.url, config[1], bearer_token=token, ca_pem=ca, insecure_skip_verify=prom.insecure_skip_verify)
            return current

    def forget(self, body: Mapping[str, Any]) -> None:
        with self._lock:
            source = self._sources.pop(policy_key(body), None)
            self._selections.pop(policy_key(body), None)
        if source is not None:
            source.close()

    def readings(self, spec: DegradationPolicySpec, body: Mapping[str, Any]) -> tuple[dict[str, Reading], Verdict]:
        """Each trigger's reading, and the Ready condition (False when the credentials are missing)."""
        try:
            source = self.source(spec, body)
        except SecretMissing as error:
            reading = Reading("unavailable", message=str(error))
            problem = Verdict(False, PolicyReason.SECRET_MISSING, str(error))
            return {t.name: reading for t in spec.triggers}, status_.ready(spec, problem)
        return source.read_all(spec.triggers), status_.ready(spec)

    # -- the cluster --------------------------------------------------------------------------
    def _deployments(self, body: Mapping[str, Any], namespaces: tuple[str, ...],
                     listed: Mapping[str, Sequence[dict]] | None = None) -> dict[tuple[str, str], dict]:
        """The Deployments of `namespaces` (from `listed` when given: the operator's index, by
        namespace; else listed now), and those the policy shed elsewhere (to restore them)."""
        found: dict[tuple[str, str], dict] = {}
        for namespace in namespaces:
            if listed is None or namespace not in listed:
                found.update(((namespace, d["metadata"]["name"]), d) for d in self.reader.deployments(namespace))
            else:
                found.update(self._keyed(namespace, listed[namespace]))
        # what the policy shed in namespaces it no longer covers: read one by one, to restore
        for entry in (body.get("status") or {}).get("shed") or []:
            key = (entry["namespace"], entry["name"])
            if entry["namespace"] not in namespaces and key not in found and not entry.get("dryRun"):
                missing = self.reader.deployment(*key)
                if missing is not None:
                    found[key] = missing
        return found

    def _keyed(self, namespace: str, deployments: Sequence[dict]) -> dict[tuple[str, str], dict]:
        """The watch's Deployments of one namespace by (namespace, name), built again only when they
        are not the very same objects as last time (the index replaces an object's entry when it
        changes): a hundred policies keyed a thousand Deployments ten times a second (bench/scale).
        The answer is shared: not to be changed."""
        with self._lock:
            cached = self._by_namespace.get(namespace)
        if cached is not None and len(cached[0]) == len(deployments) \
                and all(map(operator.is_, cached[0], deployments)):
            return cached[1]
        keyed = {(namespace, d["metadata"]["name"]): d for d in deployments}
        with self._lock:
            self._by_namespace[namespace] = (tuple(deployments), keyed)
        return keyed

    def _priorities(self, spec: DegradationPolicySpec) -> tuple[dict[str, int], int]:
        if not any(t.max_pod_priority is not None for t in spec.tiers):
            return {}, 0  # only tiers by label: no need to read the classes
        classes = self.reader.priority_classes()
        return {c["metadata"]["name"]: int(c.get("value", 0)) for c in classes}, default_priority(classes)

    # -- one evaluation -----------------------------------------------------------------------
    def evaluate(self, body: Mapping[str, Any], spec: DegradationPolicySpec, memory: Memory,
                 now: float | None = None, listed: Mapping[str, Sequence[dict]] | None = None) -> Evaluation:
        """One evaluation. listed: the Deployments by namespace as the operator's watch has them
        (a namespace absent from it is listed from the API server)."""
        policy = policy_key(body)
        previous = body.get("status") or {}
        readings, ready = self.readings(spec, body)
        now = time.time() if now is None else now
        # a namespace the policy may not shed in is one it does not cover: what it shed there
        # before (the opt-in label since removed) is restored like anything outside its namespaces
        admission = self.admission(spec, body)
        deployments = self._deployments(body, admission.allowed, listed)
        classes, default = self._priorities(spec)
        dry = status_.dry_marks(previous, policy)
        if listed is None:
            selection = select(spec, policy, admission.allowed, deployments.values(), classes, default, dry)
        else:
            selection = self._select(policy, spec, admission.allowed, tuple(deployments.values()), classes, default,
                                     dry)
        plan = decide(spec, memory, readings, selection, now)

        # namespaces with something shed, about to be, or shed at the last evaluation (a ScaledObject
        # paused for a Deployment deleted since is resumed there)
        involved = ({t.namespace for t in selection.all_shed()} | {t.namespace for t in plan.shed}
                    | {e["namespace"] for e in previous.get("shed") or [] if not e.get("dryRun")})
        hpas = hpas_by_target(h for ns in sorted(involved) for h in self.reader.hpas(ns))
        scaled = keda.by_target(so for ns in sorted(involved) for so in self.reader.scaled_objects(ns))
        outcomes = self._act(spec, policy, plan.shed, plan.restore, deployments, hpas, scaled, now)
        if not spec.dry_run:
            outcomes += self._sweep(policy, scaled, keda.shed_after(selection, outcomes),
                                    {t.key for t in plan.shed + plan.restore})
        conflicts = {t.key: conflict_message(deployments[t.key], hpas.get(t.key), scaled.get(t.key))
                     for t in selection.all_shed() if t.conflict and t.key in deployments}
        # the pools whose classes the policy refuses: which of the named classes they define
        namespace = body["metadata"]["namespace"]
        named = {n.pool for t in spec.tiers if t.name in plan.memory.refused for n in t.request_classes}
        pools = {}
        for pool in sorted(named):
            # a failed read delays only the report of unknown classes: the pool refuses what it defines
            with contextlib.suppress(ApiError):
                pools[pool] = self.reader.pool_classes(namespace, pool)

        status, events = status_.build(spec, body["metadata"].get("generation"), previous, plan, selection,
                                       outcomes, hpas, conflicts, ready, now, admission, pools)
        return Evaluation(status, events, plan.memory, now + plan.wake_in)

    def _select(self, policy: str, spec: DegradationPolicySpec, allowed: Sequence[str],
                deployments: tuple[Mapping[str, Any], ...], classes: Mapping[str, int], default: int,
                dry: Mapping[tuple[str, str], Any]) -> Selection:
        """targets.select, answered from the last call while its inputs are the same: an equal spec,
        namespaces, priorities and dry-run marks, and the very same Deployment objects (the watch's
        index replaces an object's entry when it changes, and nothing changes one in place). A
        hundred policies sorted a thousand balancer Deployments ten times a second: a quarter of
        the operator's idle CPU in bench/scale's profile at 1,000 pools."""
        inputs = (spec, tuple(allowed), dict(classes), default, dict(dry))
        with self._lock:
            cached = self._selections.get(policy)
        if cached is not None and cached[0] == inputs and len(cached[1]) == len(deployments) \
                and all(map(operator.is_, cached[1], deployments)):
            return cached[2]
        selection = select(spec, policy, allowed, deployments, classes, default, dry)
        with self._lock:
            self._selections[policy] = (inputs, deployments, selection)
        return selection

    def _restore(self, target: Target, deployment: Mapping[str, Any], so: keda.ScaledObject | None,
                 policy: str) -> Outcome:
        """Resumes the ScaledObject this policy paused, then restores the Deployment (keda.py: why in
        this order); a failed resume holds the restore until the next evaluation."""
        if keda.to_resume(so, policy):
            assert so is not None
            why = self.scaler.resume(so)
            if why:
                return Outcome(target, "failed", f"restoring {target}: resuming KEDA ScaledObject {so}: {why}; "
                               "tried again at the next evaluation", target.shed.original_replicas
                               if target.shed else None, deployment)
        outcome = self.scaler.restore(target, deployment)
        if keda.to_resume(so, policy) and outcome.action in ("restored", "released"):
            outcome = dataclasses.replace(outcome, message=outcome.message + f"; KEDA ScaledObject {so} resumed")
        return outcome

    def _shed(self, target: Target, deployment: Mapping[str, Any], so: keda.ScaledObject | None, policy: str,
              since: str) -> list[Outcome]:
        """Sheds the Deployment, then pauses its ScaledObject at 0 replicas (keda.py)."""
        outcome = self.scaler.shed(target, deployment, policy, since)
        if outcome.action != "shed" or so is None:
            return [outcome]
        if not keda.to_pause(so):
            note = (f"; KEDA ScaledObject {so} is paused at {so.paused_replicas} replicas by "
                    f"{so.paused_by or 'someone else'}: left alone")
            return [dataclasses.replace(outcome, message=outcome.message + note)]
        why = self.scaler.pause(so, policy)
        if why:
            return [outcome, Outcome(target, "failed", f"pausing KEDA ScaledObject {so} of {target}: {why}; "
                                     "tried again at the next evaluation", deployment=deployment)]
        return [dataclasses.replace(outcome, message=outcome.message + (
            f"; KEDA ScaledObject {so} paused at 0 replicas (autoscaling.keda.sh/paused-replicas) until the restore"))]

    def _sweep(self, policy: str, scaled: Mapping[tuple[str, str], keda.ScaledObject], shed: set[tuple[str, str]],
               handled: set[tuple[str, str]]) -> list[Outcome]:
        """Pauses and resumes what keda.sweep finds; the failures, as outcomes (a Warning each)."""
        pause, resume = keda.sweep(policy, scaled, shed, handled)
        failed = []
        for so, why, verb in ([(so, self.scaler.pause(so, policy), "pausing") for so in pause]
                              + [(so, self.scaler.resume(so), "resuming") for so in resume]):
            if why:
                target = Target(so.namespace, so.deployment, "", 0, None, 0)
                failed.append(Outcome(target, "failed", f"{verb} KEDA ScaledObject {so} of {target}: {why}; "
                                      "tried again at the next evaluation"))
        return failed

    def _act(self, spec: DegradationPolicySpec, policy: str, shed: tuple[Target, ...], restore: tuple[Target, ...],
             deployments: Mapping[tuple[str, str], dict], hpas: Mapping[tuple[str, str], str],
             scaled: Mapping[tuple[str, str], keda.ScaledObject], now: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        since = rfc3339(now) or ""
        for target in restore:
            deployment = deployments[target.key]
            if target.shed is not None and target.shed.dry_run:
                outcomes.append(Outcome(target, "would-restore", f"dryRun: would scale {target} (tier "
                                        f"{target.tier}) back to {target.shed.original_replicas} replicas",
                                        target.shed.original_replicas, deployment))
            else:
                outcomes.append(self._restore(target, deployment, scaled.get(target.key), policy))
        for target in shed:
            deployment = deployments[target.key]
            so = scaled.get(target.key)
            if spec.dry_run:
                also = f" and pause KEDA ScaledObject {so}" if keda.to_pause(so) else ""
                outcomes.append(Outcome(target, "would-shed", f"dryRun: would scale {target} (tier {target.tier}) "
                                        f"from {target.replicas} to 0 replicas{also}", target.replicas, deployment))
                continue
            done = self._shed(target, deployment, so, policy, since)
            if done[0].action == "shed" and target.key in hpas and so is None:  # KEDA's own HPA: said above
                done[0] = dataclasses.replace(done[0], message=done[0].message + (
                    f"; HorizontalPodAutoscaler {hpas[target.key]} pauses at 0 replicas and resumes after the restore"))
            outcomes.extend(done)
        return outcomes

    # -- the policy goes ----------------------------------------------------------------------
    def release_all(self, body: Mapping[str, Any], spec: DegradationPolicySpec | None) -> list[Outcome]:
        """Restores everything the policy shed (dryRun or not): it is being deleted."""
        policy = policy_key(body)
        namespaces = set(namespaces_of(spec, body))
        namespaces |= {e["namespace"] for e in (body.get("status") or {}).get("shed") or []}
        outcomes = [o for namespace in sorted(namespaces) for o in self.release(namespace, policy)]
        self.forget(body)
        return outcomes

    def release(self, namespace: str, policy: str) -> list[Outcome]:
        """Restores every Deployment of `namespace` that `policy` (namespace/name) shed, resuming
        the KEDA ScaledObjects it paused there; the policy may be gone already (hakeeper's
        uninstall restores what any policy shed). Outcomes "changed" and "failed" are left to try
        again; raises platform.kube.ApiError when a read fails."""
        outcomes = []
        scaled = keda.by_target(self.reader.scaled_objects(namespace))
        for deployment in self.reader.deployments(namespace):
            mark = shed_mark(deployment)
            if mark is None or mark.policy != policy:
                continue
            meta = deployment["metadata"]
            target = Target(namespace, meta["name"], mark.tier, 0, None,
                            int(deployment["spec"].get("replicas", 1)), mark)
            outcomes.append(self._restore(target, deployment, scaled.get(target.key), policy))
        # paused for a Deployment that is no longer there, or no longer shed
        handled = {o.target.key for o in outcomes}
        return outcomes + self._sweep(policy, scaled, set(), handled)
