"""Condition and Event reasons: defined once in api/ (conditions.py, events.py), and every reason
the operator's code spells out as a literal is one of them."""

from __future__ import annotations

import ast
import pathlib
import re
import typing

import pytest

from hakeeper.api import conditions, events
from hakeeper.api.events import DatabaseEvent, EventType, PolicyEvent, PoolEvent
from hakeeper.api.replicateddatabase import Phase

PACKAGE = pathlib.Path(conditions.__file__).parent.parent
CAMEL = re.compile(r"^[A-Z](?=.*[a-z])[A-Za-z0-9]+$")  # "ErrantTransactions", not "ON"
EVENT_REASONS = {str(m) for c in (events.CommonEvent, PoolEvent, DatabaseEvent, PolicyEvent) for m in c}
CONDITION_REASONS = {str(m) for c in (conditions.CommonReason, conditions.PoolReason, conditions.DatabaseReason,
                                      conditions.PolicyReason) for m in c}
PHASES = set(typing.get_args(Phase))


def modules() -> list[tuple[pathlib.Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py")) if "agents" not in p.parts]


def literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_every_literal_event_reason_is_in_the_catalog() -> None:
    """kopf.event/info/warn(reason="...") anywhere, and the clustering loop's (reason, message) tuples."""
    found: dict[str, str] = {}
    for path, tree in modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("event", "info", "warn")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "kopf"):
                for kw in node.keywords:
                    if kw.arg == "reason" and literal(kw.value):
                        found[literal(kw.value) or ""] = f"{path.name}:{node.lineno}"
            if ("clustering" in path.parts and isinstance(node, ast.Tuple) and len(node.elts) == 2
                    and CAMEL.match(literal(node.elts[0]) or "")
                    and isinstance(node.elts[1], ast.Constant | ast.JoinedStr | ast.Name | ast.Attribute)):
                found[literal(node.elts[0]) or ""] = f"{path.name}:{node.lineno}"
    assert found, "the scan found nothing: it no longer matches how Events are posted"
    missing = {reason: where for reason, where in found.items() if reason not in EVENT_REASONS}
    assert not missing, f"Event reasons missing from api/events.py: {missing}"


def test_every_literal_condition_reason_is_in_the_catalog() -> None:
    """set_condition(..., type, status, "Reason", ...) and mark(..., reason="...") anywhere."""
    found: dict[str, str] = {}
    for path, tree in modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in ("set_condition", "with_condition") and len(node.args) > 3 and literal(node.args[3]):
                found[literal(node.args[3]) or ""] = f"{path.name}:{node.lineno}"
            if name == "mark":
                for kw in node.keywords:
                    if kw.arg == "reason" and literal(kw.value):
                        found[literal(kw.value) or ""] = f"{path.name}:{node.lineno}"
    missing = {reason: where for reason, where in found.items() if reason not in CONDITION_REASONS}
    assert not missing, f"condition reasons missing from api/conditions.py: {missing}"


@pytest.mark.parametrize("catalog", [conditions.ConditionType, conditions.CommonReason, conditions.PoolReason,
                                     conditions.DatabaseReason, conditions.PolicyReason, events.CommonEvent,
                                     PoolEvent, DatabaseEvent, PolicyEvent])
def test_reasons_are_camel_case_and_unique(catalog: type) -> None:
    values = [str(m) for m in catalog]
    assert all(CAMEL.match(v) for v in values) and len(set(values)) == len(values)


def test_the_warnings_are_the_ones_posted_as_warnings() -> None:
    """The types the handlers posted each reason with before the catalog existed."""
    def warnings(catalog: type) -> set[str]:
        return {str(m) for m in catalog if m.type == EventType.WARNING}

    assert warnings(DatabaseEvent) == {"Failed", "Lost", "ErrantTransactions", "Degraded",
                                       # a failover refused, forced or possibly losing writes needs a person
                                       "NoSafeCandidate", "FailoverRefused", "FailoverForced", "ForceFailoverIgnored",
                                       "FailoverMayLoseWrites",
                                       # a member to rebuild waits for a person, or its re-seed failed
                                       "ReseedRequired", "ReseedFailed", "ReseedIgnored",
                                       # a backup that failed, cannot run, or a restore that failed
                                       "BackupFailed", "BackupConfigInvalid", "RestoreFailed"}
    assert warnings(PolicyEvent) == {"Released", "ScaleFailed", "MetricsUnavailable", "Conflict", "EvaluationFailed",
                                     "NamespaceRefused",  # a tenant asked for a namespace not theirs
                                     "RequestClassUnknown"}  # a tier names a class its pool lacks
    assert warnings(PoolEvent) == {"InvalidWeight", "EngineNotAllowed", "ImageNotAllowed",  # lvs refused
                                   "MultipleMasters",  # a VRRP split brain
                                   "VirtualRouterIDInUse",  # two lvs pools, one VRRP router ID
                                   "TLSSecretInvalid",  # spec.tls names a Secret HAProxy cannot serve
                                   "RequestClassesRefused",  # its balancers turn clients away
                                   # engine dns: a named pool cannot be published, no target is healthy
                                   # (all published, fail open), or ExternalDNS's CRD is missing
                                   "TargetPoolMissing", "TargetPoolUnaddressable", "NoHealthyTargets",
                                   "DNSEndpointCRDMissing"}
    assert warnings(events.CommonEvent) == {"InvalidSpec", "ReconcileFailed"}
    assert DatabaseEvent.type_of("Lost") == "Warning" and DatabaseEvent.type_of("Fenced") == "Normal"
    assert DatabaseEvent.type_of("SomethingNew") == "Normal"
    assert PolicyEvent.type_of("Degraded") == "Normal"  # a policy's state, not a database's


def test_every_phase_is_a_database_event() -> None:
    """A change of phase is posted with the phase as its reason."""
    assert PHASES <= {str(m) for m in DatabaseEvent}
