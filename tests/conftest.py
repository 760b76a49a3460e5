"""Suite-wide rules: every test runs (a skip fails the run), and the summary counts tiers."""

from __future__ import annotations

import collections
import os

import pytest

TIERS = ("unit", "integration", "lvs", "e2e")
# what the e2e tier's cluster looked like (kubectl get nodes/pods), printed in the summary
CLUSTER_REPORT = pytest.StashKey[str]()
_outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def _tier(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS else "other"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _outcomes[_tier(report.nodeid)][report.outcome] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = config.stash.get(CLUSTER_REPORT, None)
    if report:
        terminalreporter.section("cluster")
        for line in report.splitlines():
            terminalreporter.write_line(line)
    if not _outcomes:
        return
    terminalreporter.section("tiers")
    for tier in (*TIERS, "other"):
        if tier in _outcomes:
            counts = _outcomes[tier]
            terminalreporter.write_line(
                f"{tier:12} {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A skipped test proves nothing; the run fails unless skips were asked for.
    skipped = sum(c["skipped"] for c in _outcomes.values())
    if skipped and not os.environ.get("HAKEEPER_ALLOW_SKIPS") and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
