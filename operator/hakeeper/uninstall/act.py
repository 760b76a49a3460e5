"""`hakeeper uninstall`, through the operator's one client (platform.kube): stop the operator,
restore what DegradationPolicies shed, remove hakeeper's finalizers. In that order: a running
operator would shed again and put its finalizers back, and the restore needs the shed marks
the finalizer removal does not touch. Every step is idempotent, so a hook that failed (or a
person) can run the whole again.

Scope: the whole cluster (`namespaces` None, the chart's ClusterRole) or the watched
namespaces (the chart's Roles), the same the operator serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hakeeper.api import KINDS
from hakeeper.api.common import rfc3339
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.platform.kube import ApiError, Kube
from hakeeper.uninstall import plan

RETRY_SECONDS = 1.0
"""Between two tries of a step not done yet (pods still terminating, a 409 on a patch)."""


class UninstallError(Exception):
    """A step was not done by its deadline; the message says what is left."""


@dataclass
class Report:
    """What the uninstall did, one line per act, for the hook Job's log."""

    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


class Uninstall:
    """One run of `hakeeper uninstall` against one cluster.

    `clock` and `sleep` are time.monotonic and time.sleep unless a test passes its own; every
    method raises UninstallError when its deadline (a `clock` reading) passes, and
    platform.kube.ApiError on an API error other than the ones it says it handles."""

    def __init__(self, kube: Kube, namespaces: tuple[str, ...] | None, report: Report | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.report = report or Report()
        self.clock, self.sleep = clock, sleep

    def _list(self, kind: str) -> list[dict[str, Any]]:
        """Every object of a kind in scope; none for a kind the API server does not serve (404:
        KEDA not installed)."""
        scopes: Iterable[str | None] = self.namespaces if self.namespaces is not None else (None,)
        try:
            return [obj for scope in scopes for obj in self.kube.list(kind, scope)]
        except ApiError as error:
            if error.not_found:
                return []
            raise

    def _until(self, deadline: float, what: str, step: Callable[[], list[str]]) -> None:
        """Runs `step` until it returns nothing left to do; UninstallError naming what is left
        once the deadline passed."""
        while True:
            left = step()
            if not left:
                return
            if self.clock() >= deadline:
                raise UninstallError(f"{what}: not done in time: {'; '.join(left)}")
            self.sleep(RETRY_SECONDS)

    # -- 1. the operator ---------------------------------------------------------------------------
    def stop_operator(self, namespace: str, name: str, deadline: float) -> None:
        """Scales the operator's Deployment to 0 and waits until none of its pods is left. A
        Deployment already gone counts as stopped."""
        deployment = self.kube.get("Deployment", namespace, name)
        if deployment is None:
            self.report.say(f"operator Deployment {namespace}/{name} not found: nothing to stop")
            return
        if (deployment.get("spec") or {}).get("replicas") != 0:
            self.kube.patch("Deployment", namespace, name, plan.STOP_PATCH)
            self.report.say(f"scaled the operator Deployment {namespace}/{name} to 0 replicas")
        selector = plan.selector(deployment)
        started = self.clock()

        def pods_left() -> list[str]:
            return plan.pod_names(self.kube.list("Pod", namespace, label_selector=selector))

        self._until(deadline, "stopping the operator", pods_left)
        self.report.say(f"the operator's pods are gone ({self.clock() - started:.1f}s)")

    # -- 2. shed Deployments -------------------------------------------------------------------------
    def restore_shed(self, deadline: float) -> None:
        """Restores every Deployment a DegradationPolicy shed, and resumes the KEDA ScaledObjects
        it paused, with the operator's own restore (degradationpolicy.cycle.Evaluator.release)."""
        evaluator = Evaluator.for_cluster(self.kube)

        def step() -> list[str]:
            left = []
            for namespace, policy in plan.shed_by(self._list("Deployment"), self._list("ScaledObject")):
                for outcome in evaluator.release(namespace, policy):
                    if outcome.action in ("changed", "failed"):
                        left.append(outcome.message)
                        continue
                    self.report.say(f"{outcome.action}: {outcome.message} (shed by {policy})")
                    if outcome.action in ("restored", "released") and outcome.deployment is not None:
                        self._event(plan.restore_event(outcome.deployment, outcome.action, outcome.message,
                                                       rfc3339(time.time()) or ""))
            return left

        self._until(deadline, "restoring shed Deployments", step)

    def _event(self, event: dict[str, Any]) -> None:
        """Posts an Event; one refused (a namespace being deleted) is only reported: the restore
        it tells of is done."""
        try:
            self.kube.create(event)
        except ApiError as error:
            self.report.say(f"no Event on {event['involvedObject']['name']}: {error}")

    # -- 3. finalizers --------------------------------------------------------------------------------
    def remove_finalizers(self, deadline: float) -> None:
        """Removes hakeeper's finalizer from every LoadBalancerPool, ReplicatedDatabase and
        DegradationPolicy (an object gone meanwhile is fine; a 409 is read again)."""
        def step() -> list[str]:
            left = []
            for kind in KINDS:
                for obj in self._list(kind.kind):
                    body = plan.finalizer_patch(obj)
                    if body is None:
                        continue
                    meta = obj["metadata"]
                    try:
                        self.kube.patch(kind.kind, meta["namespace"], meta["name"], body)
                        self.report.say(f"removed the finalizer of {kind.kind} {meta['namespace']}/{meta['name']}")
                    except ApiError as error:
                        if error.status == 409:
                            left.append(f"{kind.kind} {meta['namespace']}/{meta['name']} changed since read")
                        elif not error.not_found:
                            raise
            return left

        self._until(deadline, "removing finalizers", step)

    def run(self, operator: tuple[str, str] | None, timeout: float) -> Report:
        """The three steps in order, all within `timeout` seconds; `operator` is the
        (namespace, name) of its Deployment, None to leave it running (someone stopped it)."""
        deadline = self.clock() + timeout
        started = self.clock()
        if operator is not None:
            self.stop_operator(*operator, deadline)
        self.restore_shed(deadline)
        self.remove_finalizers(deadline)
        self.report.say(f"uninstall prepared in {self.clock() - started:.1f}s: nothing shed, no hakeeper finalizer")
        return self.report
