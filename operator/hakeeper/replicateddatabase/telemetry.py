"""A ReplicatedDatabase's own metrics after each pass, from its status and the pass's Events
(platform/metrics.py defines the families)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from hakeeper.api.common import epoch_of
from hakeeper.api.conditions import ConditionType, get_condition
from hakeeper.api.events import DatabaseEvent
from hakeeper.api.replicateddatabase import MemberRole, Phase
from hakeeper.platform import metrics
from hakeeper.platform.loop import Outcome

ROLES = get_args(MemberRole)
PHASES = get_args(Phase)


def record(series: metrics.Series, status: Mapping[str, Any], outcome: Outcome) -> None:
    """Gauges from the status (phase, members by role, lag, GTID distance, semi-sync), counters
    and the failover duration from the Events this pass posted."""
    # counters start at 0, so that the first failover is an increase Prometheus sees
    for outcome_label in ("completed", "failed"):
        series.inc(metrics.DB_FAILOVERS, outcome_label, amount=0)
        series.inc(metrics.DB_SWITCHOVERS, outcome_label, amount=0)
    series.inc(metrics.DB_FAILOVERS_REFUSED, amount=0)
    members = status.get("members") or []
    phase = status.get("phase")
    series.set(metrics.DB_PHASE, {(p,): float(p == phase) for p in PHASES})
    series.set(metrics.DB_MEMBERS, {(role,): float(sum(m.get("role") == role for m in members)) for role in ROLES})
    series.set(metrics.DB_FENCED, float(sum(m.get("role") == "fenced" for m in members)))
    series.set(metrics.DB_LAG, {(m["name"],): float(m["lagSeconds"]) for m in members
                                if m.get("lagSeconds") is not None})
    series.set(metrics.DB_BEHIND, {(m["name"],): float(m["transactionsBehind"]) for m in members
                                   if m.get("transactionsBehind") is not None})
    primary = next((m for m in members if m.get("role") == "primary"), None)
    semi_sync = primary.get("semiSyncActive") if primary else None
    series.set(metrics.DB_SEMI_SYNC, {} if semi_sync is None else {(): float(semi_sync)})
    failing = any(e.reason in (DatabaseEvent.FAILED, DatabaseEvent.FAILOVER_STARTED) for e in outcome.events)
    for event in outcome.events:
        if event.reason == DatabaseEvent.FAILOVER_COMPLETED:
            series.inc(metrics.DB_FAILOVERS, "completed")
            history = (status.get("history") or [{}])[0]
            if history.get("kind") == "failover" and history.get("durationSeconds") is not None:
                series.observe(metrics.DB_FAILOVER_DURATION, float(history["durationSeconds"]))
        elif event.reason == DatabaseEvent.SWITCHOVER_COMPLETED:
            series.inc(metrics.DB_SWITCHOVERS, "completed")
        elif event.reason == DatabaseEvent.ACTION_FAILED:
            kind = metrics.DB_SWITCHOVERS if phase == "Switching" and not failing else metrics.DB_FAILOVERS
            series.inc(kind, "failed")
    # a refusal is announced by the phase (Lost) and the decision's note: counted once
    refusals = (DatabaseEvent.LOST, DatabaseEvent.NO_SAFE_CANDIDATE, DatabaseEvent.FAILOVER_REFUSED)
    if any(event.reason in refusals for event in outcome.events):
        series.inc(metrics.DB_FAILOVERS_REFUSED)
    backups(series, status, outcome)


def backups(series: metrics.Series, status: Mapping[str, Any], outcome: Outcome) -> None:
    """The backup families: from status.backup and LastBackupSucceeded, and the runs from the
    pass's BackupSucceeded and BackupFailed Events (each run's Event is posted once)."""
    for result in ("succeeded", "failed"):
        series.inc(metrics.DB_BACKUP_RUNS, result, amount=0)
    for event in outcome.events:
        if event.reason == DatabaseEvent.BACKUP_SUCCEEDED:
            series.inc(metrics.DB_BACKUP_RUNS, "succeeded")
        elif event.reason == DatabaseEvent.BACKUP_FAILED:
            series.inc(metrics.DB_BACKUP_RUNS, "failed")
    recent = ((status.get("backup") or {}).get("recent") or [{}])[0]
    finished = epoch_of(recent.get("finished"))
    series.set(metrics.DB_BACKUP_LAST_SUCCESS, {} if finished is None else {(): finished})
    size = recent.get("sizeBytes")
    series.set(metrics.DB_BACKUP_LAST_SIZE, {} if size is None else {(): float(size)})
    condition = get_condition(status.get("conditions"), ConditionType.LAST_BACKUP_SUCCEEDED) or {}
    state = {"True": 1.0, "False": 0.0}.get(condition.get("status", ""))
    series.set(metrics.DB_BACKUP_SUCCEEDED, {} if state is None else {(): state})
