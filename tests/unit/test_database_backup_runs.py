"""Reading a database's finished backup runs (replicateddatabase.backup_runs): Jobs and their
pods as the API returns them in; status.backup, LastBackupSucceeded and Events out, each run
reported once, also by an operator that restarted."""

from __future__ import annotations

import json

from hakeeper.api.conditions import DatabaseReason
from hakeeper.api.events import DatabaseEvent
from hakeeper.api.meta import BACKUP_COMPONENT, BINLOG_COMPONENT, COMPONENT_LABEL
from hakeeper.replicateddatabase import backup_runs
from hakeeper.replicateddatabase.backup_objects import JOB_NAME_LABEL


def manifest(id_: str, finished: str, size: int = 5000) -> str:
    return json.dumps({"id": id_, "flavor": "mariadb", "started": finished.replace(":05Z", ":00Z"),
                       "finished": finished, "source": "db-1", "gtid": "0-100-42", "object": "data.xbstream.zst",
                       "size": size, "sha256": "ab" * 32})


def job(name: str, outcome: str | None, at: str, component: str = BACKUP_COMPONENT, **condition) -> dict:
    conditions = [] if outcome is None else [{"type": outcome, "status": "True", "lastTransitionTime": at,
                                              **condition}]
    status = {"conditions": conditions, **({"completionTime": at} if outcome == "Complete" else {})}
    return {"metadata": {"name": name, "labels": {COMPONENT_LABEL: component}}, "status": status}


def pod(job_name: str, message: str, at: str = "2026-11-30T03:00:06Z") -> dict:
    return {"metadata": {"labels": {JOB_NAME_LABEL: job_name}}, "status": {"containerStatuses": [
        {"state": {"terminated": {"message": message, "finishedAt": at}}}]}}


def test_a_completed_run_lists_its_backup_newest_first_with_an_event_once() -> None:
    jobs = [job("db-backup-1", "Complete", "2026-11-30T03:00:06Z"), job("db-backup-2", "Complete",
                                                                         "2026-11-30T04:00:06Z")]
    pods = [pod("db-backup-1", manifest("20261130T030000Z", "2026-11-30T03:00:05Z")),
            pod("db-backup-2", manifest("20261130T040000Z", "2026-11-30T04:00:05Z", size=7000))]
    runs = backup_runs.finished_runs(jobs, pods)
    decision = backup_runs.decide(None, runs, set())
    recent = decision.status.wire()["recent"]
    assert [r["name"] for r in recent] == ["20261130T040000Z", "20261130T030000Z"]
    assert recent[0] == {"name": "20261130T040000Z", "finished": "2026-11-30T04:00:05Z", "source": "db-1",
                         "gtid": "0-100-42", "sizeBytes": 7000, "durationSeconds": 5.0}
    assert decision.status.last_success_time == "2026-11-30T04:00:05Z"
    assert [reason for reason, _ in decision.events] == [DatabaseEvent.BACKUP_SUCCEEDED] * 2
    assert "7000 bytes" in decision.events[1][1] and "'0-100-42'" in decision.events[1][1]
    assert (decision.verdict.status, decision.verdict.reason) == ("True", DatabaseReason.BACKUP_SUCCEEDED)
    # the next pass: nothing new to say
    again = backup_runs.decide(decision.status.wire(), runs, decision.reported)
    assert again.events == [] and again.status.wire()["recent"] == recent
    # an operator restarted (no memory): the status says they are reported
    restarted = backup_runs.decide(decision.status.wire(), runs, set())
    assert restarted.events == [] and restarted.status.wire()["recent"] == recent


def test_a_failed_run_says_why_from_its_log_and_the_condition_turns_false_until_a_run_succeeds() -> None:
    ok = job("db-backup-1", "Complete", "2026-11-30T03:00:06Z")
    failed = job("db-backup-2", "Failed", "2026-11-30T04:00:20Z", reason="BackoffLimitExceeded")
    pods = [pod("db-backup-1", manifest("20261130T030000Z", "2026-11-30T03:00:05Z")),
            pod("db-backup-2", "backup 20261130T040000Z failed: the upload to store:backups/db/base failed")]
    decision = backup_runs.decide(None, backup_runs.finished_runs([ok, failed], pods), set())
    assert (decision.verdict.status, decision.verdict.reason) == ("False", DatabaseReason.BACKUP_FAILED)
    assert "the upload to store:backups/db/base failed" in decision.verdict.message
    assert decision.status.last_failure_time == "2026-11-30T04:00:20Z"
    assert "the upload" in (decision.status.last_failure or "")
    assert [r for r, _ in decision.events] == [DatabaseEvent.BACKUP_SUCCEEDED, DatabaseEvent.BACKUP_FAILED]
    # restarted: the failure is not announced again
    runs = backup_runs.finished_runs([ok, failed], pods)
    assert backup_runs.decide(decision.status.wire(), runs, set()).events == []
    # a later run succeeds: True again, the failure stays on record
    later = job("db-backup-3", "Complete", "2026-11-30T05:00:06Z")
    pods.append(pod("db-backup-3", manifest("20261130T050000Z", "2026-11-30T05:00:05Z")))
    after = backup_runs.decide(decision.status.wire(), backup_runs.finished_runs([ok, failed, later], pods),
                               decision.reported)
    assert after.verdict.status == "True" and after.status.last_failure_time == "2026-11-30T04:00:20Z"
    assert [r for r, _ in after.events] == [DatabaseEvent.BACKUP_SUCCEEDED]


def test_a_run_stopped_at_its_deadline_has_no_pod_and_its_job_condition_is_the_reason() -> None:
    stopped = job("db-backup-1", "Failed", "2026-11-30T09:00:00Z", reason="DeadlineExceeded",
                  message="Job was active longer than specified deadline")
    decision = backup_runs.decide(None, backup_runs.finished_runs([stopped], []), set())
    assert decision.verdict.status == "False"
    assert "DeadlineExceeded: Job was active longer than specified deadline" in decision.verdict.message


def test_a_run_that_completed_without_a_manifest_counts_as_failed_and_running_jobs_are_not_read() -> None:
    done = job("db-backup-1", "Complete", "2026-11-30T03:00:06Z")
    running = job("db-backup-2", None, "")
    runs = backup_runs.finished_runs([done, running], [pod("db-backup-1", "some log line")])
    assert [(r.job, r.outcome) for r in runs] == [("db-backup-1", "failed")]
    assert "not a manifest" in runs[0].message


def test_binary_log_runs_set_the_condition_but_list_no_backup_and_nothing_is_yet_unknown() -> None:
    assert backup_runs.decide(None, [], set()).verdict.status == "Unknown"
    archived = job("db-binlog-1", "Complete", "2026-11-30T03:05:00Z", component=BINLOG_COMPONENT)
    decision = backup_runs.decide(None, backup_runs.finished_runs([archived], []), set())
    assert decision.status.recent == [] and decision.events == []
    assert decision.verdict.status == "True" and "db-binlog-1" in decision.verdict.message
    failed = job("db-binlog-2", "Failed", "2026-11-30T03:10:00Z", component=BINLOG_COMPONENT)
    decision = backup_runs.decide(None, backup_runs.finished_runs(
        [archived, failed], [pod("db-binlog-2", "cannot resolve the primary db-primary.ns.svc")]), set())
    assert decision.verdict.status == "False" and "binary log archive run db-binlog-2" in decision.verdict.message


def test_the_jobs_gone_the_status_still_says_how_the_last_run_went() -> None:
    status = {"recent": [{"name": "20261130T030000Z", "finished": "2026-11-30T03:00:05Z", "source": "db-1",
                          "gtid": "0-100-42", "sizeBytes": 5000}], "lastSuccessTime": "2026-11-30T03:00:05Z"}
    assert backup_runs.decide(status, [], set()).verdict.status == "True"
    failing = {**status, "lastFailureTime": "2026-11-30T04:00:20Z", "lastFailure": "the store is unreachable"}
    verdict = backup_runs.decide(failing, [], set()).verdict
    assert verdict.status == "False" and "the store is unreachable" in verdict.message
