"""kopf handlers for ReplicatedDatabase: check the spec, and run one loop per database.

Every probeInterval a pass makes sure the objects exist, gathers the members' pod IPs and
the credentials, takes one step of the clustering loop (gather, classify, plan, act), then
writes the decision (primary, loop memory, the rollout's progress) to the status before moving
the role label that the `-primary` and `-replicas` Services select on, and posts the step's
Events. After that it carries out the rollout's next eviction (rollout.py) and the re-seed's next
step (reseed.py: the `<db>-reseed` ConfigMap, a MySQL clone on a thread of COPIES, an eviction),
and disconnects the clients of a former primary once the `-primary` Service no longer routes to it.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import kopf

from hakeeper.api import REPLICATED_DATABASE
from hakeeper.api.common import parse_duration
from hakeeper.api.conditions import DatabaseReason, Verdict, now_iso
from hakeeper.api.events import CommonEvent, DatabaseEvent
from hakeeper.api.meta import DATABASE_LABEL, FORCE_FAILOVER_ANNOTATION, RESEED_ANNOTATION, SWITCHOVER_ANNOTATION
from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec, RestoreStatus
from hakeeper.platform import kube as kubeapi
from hakeeper.platform import loop, owned
from hakeeper.platform.spec import mark, on_spec, parse_spec
from hakeeper.replicateddatabase import (
    backup_reconcile,
    objects,
    reconcile,
    reseed,
    restore,
    rollout,
    status,
    telemetry,
)
from hakeeper.replicateddatabase.clustering import Cluster, LoopMemory, Policy

GROUP, VERSION = REPLICATED_DATABASE.api_version.split("/")
PLURAL = REPLICATED_DATABASE.plural
OBJECTS_EVERY_SECONDS = 30.0
"""How often a pass renders the database's objects and compares them with what it applied (sent
only when they differ, drifted, or are OBJECTS_MAX_AGE old), and reads its StatefulSet."""
OBJECTS_MAX_AGE = 3600.0
"""Unchanged objects are applied again after this many seconds (spread down to half of it): the
safety net for a deletion the OWNED watches missed. Was every OBJECTS_EVERY_SECONDS, blind: 20
databases sent 4 applies a second (bench/scale)."""
SECRET_EVERY_SECONDS = 300.0
"""How often the credentials Secret is read again (and the generated one checked) without a spec
change: the operator may not watch Secrets, and the passwords live in the datadirs too, so a
changed Secret is no news a second matters for (was every OBJECTS_EVERY_SECONDS)."""
UNADDRESSED_SECONDS = 10.0
"""The next pass while no member's pod has an IP: there is nothing to probe, and a pod that gets
one wakes the loop at once (20 such databases passed 20 times a second: bench/scale)."""
OWNED = (("", "v1", "configmaps"), ("", "v1", "services"), ("apps", "v1", "statefulsets"),
         ("policy", "v1", "poddisruptionbudgets"))
"""(group, version, plural) of what reconcile.ensure_objects applies, watched for drift
(platform/owned.py). The backup objects are re-applied on their own schedule (backup_reconcile)."""
RETRY_SECONDS = 2.0
STATUS_EVERY_SECONDS = 30.0
WORKERS = 8
"""Threads for the databases' passes; their probes run on the clustering loop's PROBES."""

LOOP = loop.Loop(kind=REPLICATED_DATABASE.kind, failure_reason=CommonEvent.RECONCILE_FAILED, retry=RETRY_SECONDS,
                 executor=concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="replicateddatabase"))
_wakeups = loop.Wakeups()
_unaddressed: set[tuple[str, str]] = set()
"""Databases whose last pass found no member's pod with an IP (waiting for a pod event)."""
COPIES = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="reseed-copy")
"""MySQL re-seeds' clones: each blocks until its copy is complete, off the passes' threads."""


@on_spec(REPLICATED_DATABASE)
async def accept(body: kopf.Body, patch: kopf.Patch, namespace: str | None, name: str, **_: Any) -> None:
    if parse_spec(ReplicatedDatabaseSpec, body, patch) is None:
        return
    _wakeups.wake((namespace, name))
    if not (body.get("status") or {}).get("phase"):
        mark(body, patch, ready=False, reason=DatabaseReason.INITIALIZING, message="starting the members",
             extra={"phase": "Initializing"})


class DatabasePass:
    """One database's passes. Between them it keeps the loop's memory, the primary and the
    history it decided last: the status may not show them yet when a write was skipped."""

    def __init__(self, body: Mapping[str, Any], writer: loop.StatusWriter) -> None:
        self.writer = writer
        status = body.get("status") or {}
        self.memory: LoopMemory | None = reconcile.memory_of(status)
        self.primary: str | None = status.get("currentPrimary")
        self.history: list[dict[str, Any]] = list(status.get("history") or [])
        self.rendered: tuple[int | None, float] = (None, 0.0)
        """(generation, monotonic time) of the last render of the objects (OBJECTS_EVERY_SECONDS)."""
        self.objects = kubeapi.AppliedObjects(max_age=OBJECTS_MAX_AGE, spread=0.5)
        """What ensure_objects sent, for the OWNED watches' drift check and to send only changes."""
        self.secret_read: tuple[int | None, float] = (None, 0.0)
        """(generation, monotonic time) of the last read of the credentials (SECRET_EVERY_SECONDS)."""
        self.rollout: rollout.RolloutDecision | None = None
        self.departures: dict[str, reconcile.Departure] = {}
        """Former primaries whose client sessions are to be killed once the -primary Service
        no longer routes to them."""
        self.reseeds: dict[str, reseed.Entry | None] | None = None
        """The `<db>-reseed` ConfigMap's entries as last read or written (None: not read yet)."""
        self.copies: dict[str, tuple[str, concurrent.futures.Future[tuple[bool, list[Any]]]]] = {}
        """member -> (entry id, its clone running or done in COPIES)."""
        self.reported: set[tuple[str, str]] = set()
        """(member, why) already announced by a ReseedRequired Event."""
        self.credentials: Any = None
        """The credentials read when the objects were last applied (read again with them)."""
        self.statefulset: tuple[float, dict[str, Any] | None] | None = None
        """(when, the StatefulSet as read then)."""
        self.restore: RestoreStatus | None = (RestoreStatus.model_validate(status["restore"])
                                              if status.get("restore") else None)
        """status.restore as last decided (spec.restore)."""
        self.restore_invalid: str | None = None
        """Why spec.restore cannot be used, as last told in an Event (reconcile.RestoreInvalid)."""
        self.backups = backup_reconcile.Backups()

    def _statefulset(self, kube: kubeapi.Kube, namespace: str, name: str, applied: bool) -> dict[str, Any] | None:
        """The StatefulSet, read again only when it may have changed: the objects were just applied
        (a new template), its controller has not caught up with its generation yet (updateRevision
        is about to change), a rollout is under way, or OBJECTS_EVERY_SECONDS passed. Between those
        it is the operator's own object, unchanged (was: a GET every probeInterval)."""
        now = time.monotonic()
        if self.statefulset is not None and not applied and now - self.statefulset[0] < OBJECTS_EVERY_SECONDS:
            sts = self.statefulset[1]
            settled = sts is not None and ((sts.get("status") or {}).get("observedGeneration")
                                           == (sts.get("metadata") or {}).get("generation"))
            if settled and not (self.rollout is not None and self.rollout.outdated):
                return sts
        self.statefulset = (now, kube.get("StatefulSet", namespace, name))
        return self.statefulset[1]

    def __call__(self, body: Mapping[str, Any], observed: Sequence[Mapping[str, Any]] | None = None) -> loop.Outcome:
        """observed: the database's pods from the operator's index (reconcile.pod_index_entry)."""
        started = time.monotonic()
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            spec = ReplicatedDatabaseSpec.model_validate(body["spec"])
        except ValueError:
            return loop.Outcome(next_in=RETRY_SECONDS)  # the spec handler reports it
        interval = parse_duration(spec.failover.probe_interval)
        kube = kubeapi.shared()
        generation = meta.get("generation")
        now = time.monotonic()
        render = (self.rendered[0] != generation or now - self.rendered[1] > OBJECTS_EVERY_SECONDS
                  or self.objects.drifts_pending())
        secret_due = self.secret_read[0] != generation or now - self.secret_read[1] > SECRET_EVERY_SECONDS
        applied = False
        if render:
            try:
                applied = reconcile.ensure_objects(kube, body, spec, self.objects, check_secret=secret_due) > 0
            except reconcile.RestoreInvalid as error:
                problem = Verdict(False, error.reason, str(error))
                told, self.restore_invalid = self.restore_invalid, str(error)
                return loop.Outcome(status=status.not_ready(body.get("status"), generation, problem), next_in=interval,
                                    events=[] if told == str(error) else [
                                        loop.Event.of(DatabaseEvent.RESTORE_FAILED, str(error))])
            self.rendered = (generation, now)
        if secret_due or self.credentials is None:
            # the Secret is read every SECRET_EVERY_SECONDS, not every probeInterval: the passwords live in the
            # datadirs too, so a changed Secret is no news a second matters for
            self.credentials = None
            try:
                self.credentials = reconcile.credentials(kube, name, namespace, spec)
            except reconcile.CredentialsMissing as error:
                problem = Verdict(False, error.reason, str(error))
                return loop.Outcome(status=status.not_ready(body.get("status"), generation, problem),
                                    next_in=interval)
            self.secret_read = (generation, now)
        credentials = self.credentials
        members, pods = reconcile.members(kube, name, namespace, spec, observed)
        cluster = Cluster(spec.flavor, credentials, Policy.from_spec(spec))
        request = (reconcile.switchover_request(body, name, spec, pods)
                   or reconcile.rollout_switchover(body, self.rollout, self.primary))
        force = reconcile.force_request(body)
        before = self.primary
        result = cluster.step(members, self.primary, self.memory,
                              switchover_target=request[1] if request else None, force_target=force)
        decision = rollout.decide(self._statefulset(kube, namespace, name, applied), pods, result.members,
                                  result.primary, busy=result.failover_in_progress)
        reseeding = self._reseed_decision(kube, body, spec, members, pods, result)
        restoring, restore_events = self._restore(spec, pods, name)
        written = reconcile.status_of({**body, "status": {**(body.get("status") or {}), "history": self.history}},
                                     spec, result, now_iso(), decision, reseeding, restoring)
        write_handled, handled = reconcile.handled_switchover(body, request, result)
        if write_handled:
            # done: a later failover must not switch back to this target
            written["handledSwitchover"] = handled
        # The decision is this process's before it is written: a status write that fails (the
        # pass raises and is retried) must not make the next step plan from the old record and
        # hand the primary back (field fault b).
        self.memory, self.primary, self.history = result.memory, result.primary, written["history"]
        backups = self.backups(kube, body, spec, reconcile.secret_name(name, spec))
        if backups is not None:
            backups.merge_into(written, generation, now_iso())
        # the decision first: a crash after this line only leaves the label to move
        if not self.writer.write(body, written):
            return loop.Outcome()
        self.backups.commit()
        reconcile.role_labels(kube, namespace, pods, result)
        done_with = {SWITCHOVER_ANNOTATION: None} if (handled or "").startswith("annotation:") else {}
        if result.force is not None:
            done_with[FORCE_FAILOVER_ANNOTATION] = None  # used once, or refused with an Event
        if done_with:
            kube.patch(REPLICATED_DATABASE.kind, namespace, name, {"metadata": {"annotations": done_with}})
        events = restore_events + _events(result.events) + _events(backups.events if backups is not None else [])
        events += self._roll(kube, namespace, pods, decision)
        events += self._reseed(kube, cluster, body, members, pods, reseeding)
        if before is not None and result.primary != before:
            self.departures[before] = reconcile.Departure(since=time.monotonic())
        events += self._disconnect(kube, cluster, members, name, namespace, pods, result.primary)
        if not any(m.addressed for m in members) and not result.failover_in_progress:
            # nothing to probe (no member's pod has an IP: none scheduled or started yet): the pod
            # that gets one wakes the loop (pod_changed)
            _unaddressed.add((namespace, name))
            return loop.Outcome(events=events, next_in=UNADDRESSED_SECONDS)
        _unaddressed.discard((namespace, name))
        return loop.Outcome(events=events, next_in=max(0.05, interval - (time.monotonic() - started)))

    def _restore(self, spec: ReplicatedDatabaseSpec, pods: Mapping[str, Any], name: str) -> tuple[
            RestoreStatus | None, list[loop.Event]]:
        """status.restore from the first member's init container (restore.observe, progress), and
        its Events; (None, []) without spec.restore."""
        if spec.restore is None:
            return None, []
        observed = restore.observe(pods.get(f"{name}-0")) if (
            self.restore is None or self.restore.phase != "Completed") else ("Completed", "")
        self.restore, pairs = restore.progress(self.restore, spec.restore, observed)
        return self.restore, [loop.Event.of(reason, message) for reason, message in pairs]

    def _disconnect(self, kube: kubeapi.Kube, cluster: Cluster, members: list[Any], name: str, namespace: str,
                    pods: Mapping[str, Any], primary: str | None) -> list[loop.Event]:
        """Kills the client sessions of former primaries the -primary Service no longer routes
        to: a client that reconnected (or kept a connection) through the Service before kube-proxy
        moved would stay on a read-only member (found with sysbench on the real node)."""
        if not self.departures:
            return []
        self.departures.pop(primary or "", None)  # the primary again: its clients are welcome
        routed = reconcile.primary_endpoints(kube, name, namespace)
        events = []
        for member, departure in list(self.departures.items()):
            ip = ((pods.get(member) or {}).get("status") or {}).get("podIP")
            if departure.due(ip is not None and ip in routed, time.monotonic()):
                del self.departures[member]
                events += _events(cluster.disconnect_clients(members, member))
        return events

    def _reseed_decision(self, kube: kubeapi.Kube, body: Mapping[str, Any], spec: ReplicatedDatabaseSpec,
                         members: list[Any], pods: Mapping[str, Any], result: Any) -> reseed.ReseedDecision:
        """The re-seed's next step (reseed.decide). The ConfigMap is read at the first pass and
        while a member needs or undergoes a re-seed; the operator is its only writer."""
        meta = body["metadata"]
        required = any(m.get("reseed") for m in result.members)
        if self.reseeds is None or required or self.reseeds:
            self.reseeds = reseed.entries_of(kube.get("ConfigMap", meta["namespace"],
                                                      objects.names(meta["name"])["reseed"]))
        copies: dict[str, reseed.CopyState] = {}
        for member, (copy_id, future) in self.copies.items():
            entry = self.reseeds.get(member)
            if entry is not None and entry.id == copy_id:
                copies[member] = "running" if not future.done() else "done" if future.result()[0] else "failed"
        return reseed.decide(spec.flavor, result.members, pods, {m.name: m.host for m in members}, self.reseeds,
                             result.primary, auto=spec.auto_reseed, requested=reconcile.reseed_request(body),
                             copies=copies, busy=result.failover_in_progress,
                             new_id=datetime.datetime.now(datetime.UTC).strftime("%Y%m%dt%H%M%Sz"), now=now_iso(),
                             restored=spec.restore is not None)

    def _reseed(self, kube: kubeapi.Kube, cluster: Cluster, body: Mapping[str, Any], members: list[Any],
                pods: Mapping[str, Any], d: reseed.ReseedDecision) -> list[loop.Event]:
        """Carries out the re-seed's decision after the step's status is written; its Events."""
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        entries = dict(self.reseeds or {})
        events: list[loop.Event] = []
        requested = reconcile.reseed_request(body)
        required = dict(d.required)
        self.reported &= set(d.required)
        if d.action == "report":
            for needy, why in d.required:
                if (needy, why) not in self.reported:
                    self.reported.add((needy, why))
                    events.append(loop.Event.of(DatabaseEvent.RESEED_REQUIRED, f"{needy}: {why}; to rebuild it from "
                                                f"a healthy member's data: {reseed.command(name, needy)}"))
        unannotate = {"metadata": {"annotations": {RESEED_ANNOTATION: None}}}
        if requested is not None and requested not in required and requested not in entries:
            kube.patch(REPLICATED_DATABASE.kind, namespace, name, unannotate)
            events.append(loop.Event.of(DatabaseEvent.RESEED_IGNORED, f"{requested} needs no re-seed: it can rejoin "
                                        "by replication, or is not a member (annotation removed)"))
        entry, member = d.entry, d.member
        if d.action in ("begin", "copied") and entry is not None:
            entries[entry.member] = entry
            reconcile.write_reseeds(kube, body, entries)
            if d.action == "begin":
                events.append(loop.Event.of(DatabaseEvent.RESEED_STARTED, d.reason))
                if requested == entry.member:
                    kube.patch(REPLICATED_DATABASE.kind, namespace, name, unannotate)
        elif d.action == "copy" and entry is not None:
            directory = f"{objects.VOLUME_DIR}/.reseed-{entry.id}"
            self.copies[entry.member] = (entry.id, COPIES.submit(cluster.clone, members, entry.member, entry.donor,
                                                                 directory))
        elif d.action == "restart" and entry is not None:
            if kube.evict(namespace, entry.member, uid=entry.pod):
                events.append(loop.Event.of(DatabaseEvent.RESEED_RESTART, d.reason))
        elif d.action in ("complete", "fail") and member is not None:
            entries.pop(member, None)
            reconcile.write_reseeds(kube, body, entries)
            reason = DatabaseEvent.RESEED_COMPLETED if d.action == "complete" else DatabaseEvent.RESEED_FAILED
            events.append(loop.Event.of(reason, d.reason))
        # a clone's outcome is dropped once a decision used it (copied, fail), never before: a
        # clone that ended after this pass's decision is seen by the next one, not started again
        if d.action in ("copied", "fail") and member in self.copies:
            _, future = self.copies.pop(member)
            if future.done():
                events = _events(future.result()[1]) + events
        self.copies = {m: c for m, c in self.copies.items() if m in entries}
        self.reseeds = entries
        return events

    def _roll(self, kube: kubeapi.Kube, namespace: str, pods: Mapping[str, Any],
              decision: rollout.RolloutDecision) -> list[loop.Event]:
        """Carries out the rollout's decision after the step's status is written: evicts the
        member to restart (a switchover is asked for by the next step); its Events."""
        before, self.rollout = self.rollout, decision
        if decision.action == "restart" and reconcile.restart_member(kube, namespace, pods, decision):
            return [loop.Event.of(DatabaseEvent.ROLLOUT_RESTART, f"{decision.reason} (revision {decision.revision}; "
                                  f"{len(decision.outdated) - 1} more to go)")]
        if decision.action == "none" and before is not None and before.outdated:
            return [loop.Event.of(DatabaseEvent.ROLLOUT_COMPLETED, f"every member runs revision {decision.revision}")]
        return []


def _events(pairs: list[tuple[str, str]]) -> list[loop.Event]:
    """The clustering loop's (reason, message) pairs as Events, each of its catalog type."""
    return [loop.Event(DatabaseEvent.type_of(reason), reason, message) for reason, message in pairs]


@kopf.index("", "v1", "pods", labels={DATABASE_LABEL: kopf.PRESENT})
async def database_pods(body: kopf.Body, **_: Any) -> dict[Hashable, Any]:
    """The databases' pods by (namespace, database): a pass reads them here instead of listing
    them every probeInterval."""
    return dict(reconcile.pod_index_entry(body))


@kopf.on.event("", "v1", "pods", labels={DATABASE_LABEL: kopf.PRESENT})
async def pod_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """A member's pod changed while its database has nothing to probe: the database passes now, not
    UNADDRESSED_SECONDS later. Only then: an extra pass of a running database would count a failing
    member's probes faster than failover.probeInterval."""
    key = (namespace, (body.metadata.labels or {})[DATABASE_LABEL])
    if key in _unaddressed:
        _wakeups.wake(key)


# stopping: let a running pass (a failover, perhaps) finish before cancelling
@kopf.daemon(GROUP, VERSION, PLURAL, id="cluster", cancellation_backoff=30, cancellation_timeout=15)
async def run_cluster(body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped, logger: Any,
                      database_pods: kopf.Index[Any, Any] | None = None, **_: Any) -> None:
    assert namespace is not None, "a namespaced kind"
    # kopf passes every index to every handler, by the name of the function that keeps it
    assert database_pods is not None
    index = database_pods
    key = (namespace, name)
    wake = _wakeups.register(key)
    writer = loop.StatusWriter(kubeapi.shared(), REPLICATED_DATABASE.kind, namespace, name,
                               volatile=status.status_fingerprint, max_age=STATUS_EVERY_SECONDS)
    step = DatabasePass(body, writer)
    owner = (REPLICATED_DATABASE.kind, namespace, name)
    owned.OWNERS.register(owner, step.objects, wake.set)
    try:
        # the pass writes the status itself (before it moves the role label)
        await loop.run(LOOP, body, writer, step, wake, stopped, logger,
                       observe=lambda _snapshot: tuple(index.get((namespace, name), ())), telemetry=telemetry.record)
    finally:
        _wakeups.unregister(key)
        _unaddressed.discard(key)
        owned.OWNERS.unregister(owner)


owned.OWNERS.watch(OWNED)
