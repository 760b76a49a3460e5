"""What a database's finished backup runs say (pure): its Jobs and their pods as read from the
API in, status.backup, the LastBackupSucceeded condition and the Events of runs not reported yet out.

A run is a Job of the `<db>-backup` or `<db>-binlog` CronJob (backup_objects). It finished when
the Job has the condition Complete or Failed (Kubernetes: "Jobs", "Job termination and
cleanup"); its report is its pod's termination message: the manifest JSON of a backup that
succeeded (backup.Manifest), the log's last lines of one that failed. A Job stopped at its
activeDeadlineSeconds has no pod left: its condition's message is the report.

A run is reported once: by the pass's memory of the Jobs it reported, and across a restart of
the operator by the status itself (a backup whose name is in status.backup.recent, a failure
not after status.backup.lastFailureTime), so a new operator does not post old runs again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hakeeper.api.common import epoch_of
from hakeeper.api.conditions import DatabaseReason
from hakeeper.api.events import DatabaseEvent
from hakeeper.api.meta import BACKUP_COMPONENT, BINLOG_COMPONENT, COMPONENT_LABEL
from hakeeper.api.replicateddatabase import BackupRecord, BackupStatus
from hakeeper.replicateddatabase import backup
from hakeeper.replicateddatabase.backup_objects import JOB_NAME_LABEL

RECENT_LIMIT = 20
"""Backups listed in status.backup.recent (the model's maxItems)."""
MESSAGE_LIMIT = 1024
"""Characters of a failed run's log kept in status.backup.lastFailure and its Event."""


@dataclass(frozen=True)
class Run:
    """A finished run: its Job's name, BACKUP_COMPONENT or BINLOG_COMPONENT, the outcome, when
    it finished (RFC 3339), the manifest of a backup that succeeded, what went wrong otherwise."""

    job: str
    component: str
    outcome: Literal["succeeded", "failed"]
    finished: str
    manifest: backup.Manifest | None = None
    message: str = ""


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_ and c.get("status") == "True"), None)


def _report(pods: Iterable[Mapping[str, Any]], job: str) -> str:
    """The termination message of the job's (last) pod, "" when there is none."""
    messages = []
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) != job:
            continue
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated.get("message"):
                messages.append((terminated.get("finishedAt") or "", terminated["message"]))
    return max(messages)[1].strip() if messages else ""


def finished_runs(jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> list[Run]:
    """The finished runs among `jobs` (the database's Jobs, run_selector), oldest first; `pods`:
    their pods. A backup Job that completed without a readable manifest counts as failed: the
    store may hold the copy, but nothing says what it is."""
    pods = list(pods)
    out = []
    for job in jobs:
        name = job["metadata"]["name"]
        component = (job["metadata"].get("labels") or {}).get(COMPONENT_LABEL, "")
        if component not in (BACKUP_COMPONENT, BINLOG_COMPONENT):
            continue
        complete, failed = _condition(job, "Complete"), _condition(job, "Failed")
        if complete is None and failed is None:
            continue  # running
        done = complete or failed
        assert done is not None
        finished = (job.get("status") or {}).get("completionTime") or done.get("lastTransitionTime") or ""
        report = _report(pods, name)
        if complete is not None and component == BINLOG_COMPONENT:
            out.append(Run(name, component, "succeeded", finished))
        elif complete is not None:
            try:
                out.append(Run(name, component, "succeeded", finished, manifest=backup.Manifest.parse(report)))
            except backup.BackupError as error:
                out.append(Run(name, component, "failed", finished,
                               message=f"the run ended but its report is not a manifest ({error}): {report}"))
        else:
            why = report or f"{done.get('reason', 'Failed')}: {done.get('message', '')}".strip()
            out.append(Run(name, component, "failed", finished, message=why))
    return sorted(out, key=lambda r: (r.finished, r.job))


def record(manifest: backup.Manifest) -> BackupRecord:
    """status.backup.recent's entry of a backup."""
    started, finished = epoch_of(manifest.started), epoch_of(manifest.finished)
    duration = None if started is None or finished is None else max(0.0, finished - started)
    return BackupRecord(name=manifest.id, finished=manifest.finished, source=manifest.source, gtid=manifest.gtid,
                        size_bytes=manifest.size, duration_seconds=duration)


def describe(manifest: backup.Manifest) -> str:
    return (f"backup {manifest.id} of {manifest.source}: {manifest.size} bytes compressed, GTID position "
            f"'{manifest.gtid}', finished {manifest.finished}")


def _what(run: Run) -> str:
    return "the binary log archive run" if run.component == BINLOG_COMPONENT else "the backup run"


@dataclass
class Verdict:
    """LastBackupSucceeded: "True", "False" or "Unknown" (no run finished yet), reason, message."""

    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


@dataclass
class Decision:
    """status.backup as it now is, the condition, the Events to post, the Jobs now reported
    and the newly reported runs (for the metrics)."""

    status: BackupStatus
    verdict: Verdict
    events: list[tuple[str, str]] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)
    new: list[Run] = field(default_factory=list)


def decide(previous: Mapping[str, Any] | None, runs: list[Run], reported: set[str]) -> Decision:
    """The status after `runs` (finished_runs), given status.backup as last written (camelCase,
    None when absent) and the Jobs already reported by this process. Events are (reason, message)
    pairs of api.events.DatabaseEvent. The condition follows the newest finished run of either
    CronJob, else what the status remembers (the Jobs of the runs it lists may be gone)."""
    status = BackupStatus.model_validate(previous or {})
    known = {r.name for r in status.recent}
    last_failure = epoch_of(status.last_failure_time) if status.last_failure_time else None
    out = Decision(status=status, verdict=Verdict("Unknown", DatabaseReason.NO_BACKUP_YET, ""),
                   reported=set(reported))
    for run in runs:
        if run.job in out.reported:
            continue
        out.reported.add(run.job)
        if run.outcome == "succeeded" and run.manifest is not None:
            if run.manifest.id in known:
                continue
            known.add(run.manifest.id)
            status.recent = sorted([record(run.manifest), *status.recent], key=lambda r: r.name,
                                   reverse=True)[:RECENT_LIMIT]
            if not status.last_success_time or run.manifest.finished > status.last_success_time:
                status.last_success_time = run.manifest.finished
            out.events.append((DatabaseEvent.BACKUP_SUCCEEDED, describe(run.manifest)))
            out.new.append(run)
        elif run.outcome == "succeeded":
            out.new.append(run)  # binary logs archived: counted, not announced
        else:
            finished = epoch_of(run.finished)
            if last_failure is not None and finished is not None and finished <= last_failure:
                continue  # reported by an earlier operator
            message = run.message[-MESSAGE_LIMIT:]
            status.last_failure_time, status.last_failure = run.finished, message
            last_failure = finished
            out.events.append((DatabaseEvent.BACKUP_FAILED, f"{_what(run)} {run.job} failed (earlier backups are "
                               f"untouched; the next scheduled run tries again): {message}"))
            out.new.append(run)
    out.verdict = _verdict(status, runs)
    return out


def _verdict(status: BackupStatus, runs: list[Run]) -> Verdict:
    newest = runs[-1] if runs else None
    last_success = status.last_success_time or ""
    last_failure = status.last_failure_time or ""
    if newest is None or newest.finished < max(last_success, last_failure):
        # the Jobs are gone (history limits) or older than what the status remembers
        if last_failure and last_failure > last_success:
            return Verdict("False", DatabaseReason.BACKUP_FAILED, f"the last run failed at {last_failure}: "
                           f"{status.last_failure or ''}"[:MESSAGE_LIMIT])
        if status.recent:
            return Verdict("True", DatabaseReason.BACKUP_SUCCEEDED, f"last {_describe_record(status.recent[0])}")
        return Verdict("Unknown", DatabaseReason.NO_BACKUP_YET, "no backup run has finished yet")
    if newest.outcome == "failed":
        return Verdict("False", DatabaseReason.BACKUP_FAILED,
                       f"{_what(newest)} {newest.job} failed: {newest.message}"[:MESSAGE_LIMIT])
    if newest.manifest is not None:
        return Verdict("True", DatabaseReason.BACKUP_SUCCEEDED, f"last {describe(newest.manifest)}")
    last = f"; last {_describe_record(status.recent[0])}" if status.recent else ""
    return Verdict("True", DatabaseReason.BACKUP_SUCCEEDED, f"binary logs archived by {newest.job}{last}")


def _describe_record(r: BackupRecord) -> str:
    return (f"backup {r.name} of {r.source}: {r.size_bytes} bytes compressed, GTID position '{r.gtid}', "
            f"finished {r.finished}")
