"""The chart's alert rules, as rendered by helm, checked and unit-tested by promtool (Debian's
prometheus package): every shipped alert fires on the series it names, with the labels and
annotations a person reads, and stays quiet before its `for` has passed."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from ..support.tools import tool

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RUNBOOK = "https://github.com/hakeeper/hakeeper/blob/main/docs/runbook.md"
DB = {"namespace": "shop", "name": "db"}
POOL = {"namespace": "shop", "name": "web"}
POLICY = {"namespace": "shop", "name": "shed"}


def render_rules(*values: str) -> dict[str, Any]:
    """The rules file of the chart's alerts ConfigMap, rendered with `--set` values."""
    args = [tool("helm"), "template", "t", str(ROOT / "charts/hakeeper"), "--kube-version", "1.34.0",
            "--show-only", "templates/alerts.yaml"]
    for value in values:
        args += ["--set", value]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    configmap = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap")
    return yaml.safe_load(configmap["data"]["hakeeper.rules.yaml"])


def rules_by_alert(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rules["groups"] for r in group["rules"]}


def expand(text: str, labels: dict[str, str]) -> str:
    """The annotation as Prometheus expands it, for the templates the rules use ($labels.x)."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


# alert -> (input series, eval minute when it must fire, labels of the alert, the minute before
# which it must not fire yet, and a summary override where the value is formatted)
CASES: dict[str, tuple[list[dict[str, str]], int, dict[str, str], int, str | None]] = {
    "HakeeperDatabaseFailover": (
        [series("hakeeper_database_failovers_total", {**DB, "outcome": "completed"}, "0 0 1 1 1")], 3,
        {**DB, "outcome": "completed"}, 1, None),
    "HakeeperDatabaseFailoverFailed": (
        [series("hakeeper_database_failovers_total", {**DB, "outcome": "failed"}, "0 0 1 1 1")], 3,
        {**DB, "outcome": "failed"}, 1, None),
    "HakeeperDatabaseLost": (
        [series("hakeeper_database_phase", {**DB, "phase": "Lost"}, "0 1 1 1 1")], 3,
        {**DB, "phase": "Lost"}, 1, None),
    "HakeeperDatabaseFailoverRefused": (
        [series("hakeeper_database_failovers_refused_total", DB, "0 0 1 1")], 3, DB, 1, None),
    "HakeeperReplicationLagging": (
        [series("hakeeper_database_replication_lag_seconds", {**DB, "member": "db-2"}, "45x10")], 6,
        {**DB, "member": "db-2"}, 4, "Replica db-2 of shop/db lags 45s"),
    "HakeeperSemiSyncOff": (
        [series("hakeeper_database_semi_sync_active", DB, "1 0 0 0 0 0")], 4, DB, 2, None),
    "HakeeperDatabaseBackupFailing": (
        [series("hakeeper_database_backup_last_succeeded", DB, "1 1 0 0")], 2, DB, 1, None),
    # a backup finished at time 0; the default limit is 26 h (1560 minutes)
    "HakeeperDatabaseBackupMissing": (
        [series("hakeeper_database_backup_last_success_timestamp_seconds", DB, "0x1600")], 1570, DB, 1550,
        "No backup of shop/db for 1d 2h 10m 0s"),
    "HakeeperPoolNoReadyBackend": (
        [series("hakeeper_pool_backends_ready", POOL, "3 0 0 0 0")], 3, POOL, 1, None),
    "HakeeperPoolConfigNotApplied": (
        [series("hakeeper_pool_config_applied", POOL, "1 0x10")], 7, POOL, 5, None),
    "HakeeperPolicyDegraded": (
        [series("hakeeper_policy_degraded", POLICY, "0 1x40")], 35, POLICY, 30, None),
    "HakeeperPolicyMetricsUnavailable": (
        [series("hakeeper_policy_metrics_unavailable_seconds_total", POLICY, "0+60x20")], 12, POLICY, 5, None),
    "HakeeperOperatorDown": (
        [series("up", {"job": "hakeeper-metrics", "instance": "10.0.0.1:8081"}, "1 1 0x10")], 8,
        {}, 6, None),  # absent() of a comparison keeps no labels
    "HakeeperReconcileErrors": (
        [series("hakeeper_reconcile_errors_total", {"kind": "LoadBalancerPool"}, "0+1x30")], 25,
        {"kind": "LoadBalancerPool"}, 15, None),
    "HakeeperNotReady": (
        [series("hakeeper_ready", {"kind": "ReplicatedDatabase", **DB}, "1 0x30")], 20,
        {"kind": "ReplicatedDatabase", **DB}, 15, None),
}


def promtool(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("values", [(), ("alerts.labels.team=platform", "alerts.failoverWindow=5m")],
                         ids=["defaults", "labels-and-window"])
def test_promtool_accepts_the_rendered_rules(tmp_path: pathlib.Path, values: tuple[str, ...]) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(render_rules(*values)))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 15 rules found" in checked.stdout, checked.stdout


def test_every_alert_fires_on_its_series_with_its_labels_and_annotations(tmp_path: pathlib.Path) -> None:
    rules = render_rules("alerts.labels.team=platform")
    alerts = rules_by_alert(rules)
    assert set(CASES) == set(alerts), "every shipped alert has a case here, and nothing else"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    tests = []
    for alert, (inputs, fires_at, labels, quiet_before, summary) in CASES.items():
        rule = alerts[alert]
        alert_labels = {**labels, **rule["labels"]}
        assert alert_labels["team"] == "platform" and alert_labels["severity"] in ("warning", "critical")
        annotations = {k: expand(v, alert_labels) for k, v in rule["annotations"].items()}
        if summary is not None:
            annotations["summary"] = summary
        assert annotations["runbook_url"] == f"{RUNBOOK}#{alert.lower()}"
        tests.append({
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                {"eval_time": f"{quiet_before}m", "alertname": alert, "exp_alerts": []},
                {"eval_time": f"{fires_at}m", "alertname": alert,
                 "exp_alerts": [{"exp_labels": alert_labels, "exp_annotations": annotations}]},
            ],
        })
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                         "tests": tests}))
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_runbook_has_a_section_for_every_alert() -> None:
    runbook = (ROOT / "docs/runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
               for line in runbook.splitlines() if line.startswith("## ")}
    missing = {a for a in rules_by_alert(render_rules()) if a.lower() not in anchors}
    assert not missing, f"docs/runbook.md has no section for {sorted(missing)}"
