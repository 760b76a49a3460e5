"""A database's scheduled backups on the Kubernetes side: its backup objects applied (or
suspended, or deleted), its finished runs read, once per pass of the database's loop.

The decisions are pure (backup_objects renders, backup_runs reads the runs); this module reads
what they need through platform.kube and writes what they decide. Its outcome is merged into the
pass's own status write (status.backup and the LastBackupSucceeded condition); Ready is never
touched: a backup that fails leaves the database serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hakeeper.api.conditions import ConditionType, DatabaseReason, get_condition, with_condition
from hakeeper.api.events import DatabaseEvent
from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
from hakeeper.platform.kube import ApiError, AppliedObjects, Kube, owned_by
from hakeeper.replicateddatabase import backup_objects, backup_runs

EVERY_SECONDS = 5.0
"""How often a pass looks at the backups (the Secret, the claim, the Jobs): a run takes minutes."""
APPLY_EVERY_SECONDS = 30.0
"""Unchanged backup objects are applied again after this (someone changed or deleted them)."""
log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What the pass adds to its status write: status.backup (camelCase; None: unchanged), the
    LastBackupSucceeded condition (type, status, reason, message), or `remove` it; Events as
    (reason, message) of api.events.DatabaseEvent."""

    backup: dict[str, Any] | None = None
    condition: tuple[str, str, str] | None = None
    remove: bool = False
    events: list[tuple[str, str]] = field(default_factory=list)

    def merge_into(self, written: dict[str, Any], generation: int | None, now: str) -> None:
        """Sets status.backup and the condition in a status patch (written: camelCase, its
        conditions a list of dicts, as StatusModel.patch makes it)."""
        if self.backup is not None:
            written["backup"] = self.backup
        conditions = written.get("conditions") or []
        if self.remove:
            written["conditions"] = [c for c in conditions if c.get("type") != ConditionType.LAST_BACKUP_SUCCEEDED]
        elif self.condition is not None:
            status, reason, message = self.condition
            written["conditions"] = [c.wire() for c in with_condition(
                conditions, ConditionType.LAST_BACKUP_SUCCEEDED, status,  # type: ignore[arg-type]
                reason, message, generation, now)]


class Backups:
    """One database's backups between passes: what it applied, the Jobs it reported, whether it
    looked for leftovers to delete since spec.backup changed."""

    def __init__(self) -> None:
        self.applied = AppliedObjects(max_age=APPLY_EVERY_SECONDS)
        self.reported: set[str] = set()
        self.last = 0.0
        self.cleaned: tuple[int | None, bool] | None = None
        """(generation, binlog schedule set) when leftovers were last deleted."""
        self.cronjob_uid: str | None = None
        self.runs: dict[str, backup_runs.Run] = {}
        """Finished Jobs by name, as read once from their pods."""
        self.pending: set[str] | None = None
        """The Jobs the last pass reported, until its status is written (commit)."""

    def commit(self) -> None:
        """The pass's status (with its Outcome merged) was written: its runs are reported."""
        if self.pending is not None:
            self.reported, self.pending = self.pending, None

    def __call__(self, kube: Kube, body: Mapping[str, Any], spec: ReplicatedDatabaseSpec, secret: str,
                 now: float | None = None) -> Outcome | None:
        """The pass's part: None when it is not due yet (EVERY_SECONDS) or the API failed (logged;
        the next pass tries again, and the database's own work goes on)."""
        now = time.monotonic() if now is None else now
        if now - self.last < EVERY_SECONDS:
            return None
        self.last = now
        try:
            return self._pass(kube, body, spec, secret, now)
        except ApiError as error:
            meta = body["metadata"]
            log.warning("backups of %s/%s: %s", meta["namespace"], meta["name"], error)
            return None

    def _pass(self, kube: Kube, body: Mapping[str, Any], spec: ReplicatedDatabaseSpec, secret: str,
              now: float) -> Outcome:
        meta = body["metadata"]
        db, namespace = meta["name"], meta["namespace"]
        previous = body.get("status") or {}
        had = get_condition(previous.get("conditions"), ConditionType.LAST_BACKUP_SUCCEEDED) is not None
        if spec.backup is not None or had or previous.get("backup") is not None:
            self._clean(kube, db, namespace, spec, meta.get("generation"))
        if spec.backup is None:
            # status.backup stays: the backups listed are still in the store
            self.reported.clear()
            return Outcome(remove=had)
        b = spec.backup
        s3 = b.target.s3
        problem = backup_objects.config_problem(
            db, b, kube.get("Secret", namespace, s3.credentials.name) if s3 is not None else None,
            kube.get("PersistentVolumeClaim", namespace, b.target.volume.claim_name) if b.target.volume else None)
        if problem is None and s3 is not None and s3.ca_secret is not None:
            problem = backup_objects.ca_problem(b, kube.get("Secret", namespace, s3.ca_secret.name))
        owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta}
        # the first CronJob waits for Ready (a primary, and replicas replicating): a run before
        # would only fail for want of a serving replica
        ready = (get_condition(previous.get("conditions"), ConditionType.READY) or {}).get("status") == "True"
        if problem is None and (ready or self.cronjob_uid is not None):
            self._apply(kube, owner, db, namespace, spec, secret, now, suspend=False)
        elif kube.get("CronJob", namespace, backup_objects.names(db)["backup"]) is not None:
            # no run until it is fixed; nothing is deleted (the Jobs' reports, the store)
            self._apply(kube, owner, db, namespace, spec, secret, now, suspend=True)
        out = self._runs(kube, db, namespace, previous)
        if out.condition is not None and out.condition[1] == DatabaseReason.NO_BACKUP_YET:
            out.condition = (*out.condition[:2], f"{out.condition[2]}; schedule '{b.schedule}'")
        if problem is not None:
            before = get_condition(previous.get("conditions"), ConditionType.LAST_BACKUP_SUCCEEDED) or {}
            message = f"{problem}; no backup runs until it is fixed (backups taken are kept)"
            if (before.get("reason"), before.get("message")) != (DatabaseReason.BACKUP_CONFIG_INVALID, message):
                out.events.append((DatabaseEvent.BACKUP_CONFIG_INVALID, message))
            out.condition = ("False", DatabaseReason.BACKUP_CONFIG_INVALID, message)
        return out

    def _apply(self, kube: Kube, owner: Mapping[str, Any], db: str, namespace: str, spec: ReplicatedDatabaseSpec,
               secret: str, now: float, suspend: bool) -> None:
        """The CronJobs, owned by the database; the source Service owned by the backup CronJob,
        so that it goes with it (the operator deletes no Service)."""
        service, main, *binlog = backup_objects.desired(db, namespace, spec, secret, suspend)
        main = owned_by(main, owner)
        if self.applied.due(main, now) or self.cronjob_uid is None:
            self.cronjob_uid = kube.apply(main)["metadata"]["uid"]
            self.applied.record(main, now)
        # no blockOwnerDeletion: that would need the right to update the CronJob's finalizers
        ref = {"apiVersion": "batch/v1", "kind": "CronJob", "name": main["metadata"]["name"],
               "uid": self.cronjob_uid, "controller": True}
        service = {**service, "metadata": {**service["metadata"], "ownerReferences": [ref]}}
        kube.apply_changed([service, *(owned_by(o, owner) for o in binlog)], self.applied, now)

    def _clean(self, kube: Kube, db: str, namespace: str, spec: ReplicatedDatabaseSpec,
               generation: int | None) -> None:
        """Deletes the CronJobs spec.backup no longer asks for (their Jobs and the source Service
        go with them), once per generation: spec.backup removed, or binlogSchedule unset."""
        binlog = spec.backup is not None and bool(spec.backup.binlog_schedule)
        if self.cleaned == (generation, binlog):
            return
        stubs = backup_objects.all_names(db, namespace)
        names = backup_objects.names(db)
        unwanted = {names["binlog"]} if spec.backup is not None and not binlog else set()
        if spec.backup is None:
            unwanted = {names["backup"], names["binlog"]}
        for stub in stubs:
            if stub["kind"] == "CronJob" and stub["metadata"]["name"] in unwanted:
                if kube.delete(stub):
                    log.info("deleted CronJob %s/%s: spec.backup no longer asks for it", namespace,
                             stub["metadata"]["name"])
                self.applied.forget("CronJob", namespace, stub["metadata"]["name"])
                if stub["metadata"]["name"] == names["backup"]:
                    self.cronjob_uid = None
        self.cleaned = (generation, binlog)

    def _runs(self, kube: Kube, db: str, namespace: str, previous: Mapping[str, Any]) -> Outcome:
        jobs = kube.list("Job", namespace, label_selector=backup_objects.run_selector(db))
        finished = [j for j in jobs if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                                           for c in (j.get("status") or {}).get("conditions") or [])]
        # a finished run's outcome never changes: its pod's report is read once. (Read without
        # its pod, a run that succeeded has no manifest and would count as failed.)
        new = [j for j in finished if j["metadata"]["name"] not in self.runs]
        if new:
            pods = kube.list("Pod", namespace, label_selector=backup_objects.run_selector(db))
            self.runs.update((r.job, r) for r in backup_runs.finished_runs(new, pods))
        names = {j["metadata"]["name"] for j in finished}
        self.runs = {job: run for job, run in self.runs.items() if job in names}
        runs = sorted(self.runs.values(), key=lambda r: (r.finished, r.job))
        decision = backup_runs.decide(previous.get("backup"), runs, self.reported)
        # forget Jobs gone (history limits): the set stays as small as the history. Taken as
        # reported only once the pass wrote its status (commit): a write that failed must not
        # lose a run's report, the next pass reads it again
        self.pending = decision.reported & {j["metadata"]["name"] for j in jobs}
        verdict = decision.verdict
        return Outcome(backup=decision.status.wire(), condition=(verdict.status, verdict.reason, verdict.message),
                       events=decision.events)

