"""Least privilege, measured by the API server: every request the operator's and the balancer
agents' ServiceAccounts made during the whole e2e run (the audit log, Metadata level) against
what the chart's ClusterRole and the agent's Role grant.

It fails on a request refused for want of a rule (403), and on a granted rule that nothing
used. Runs after every other e2e test (the `after_everything` marker), so "used" means used by
the whole suite; run alone it reports the rules the rest of the suite would have used.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib

import pytest
import yaml

from hakeeper.loadbalancerpool.objects import agent_rbac

from ..conftest import CLUSTER_REPORT
from .conftest import OPERATOR_NAMESPACE, Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.after_everything]

Rule = tuple[str, str, str]
"""(API group, resource[/subresource], verb); the core group is ""."""

# Granted, but checked by an admission plugin rather than requested, so the audit log never
# shows them; the e2e API server runs that plugin, so a missing rule would fail the suite.
NOT_REQUESTED = {
    (group, f"{kind}/finalizers", "update"): "OwnerReferencesPermissionEnforcement: an owner reference with "
    "blockOwnerDeletion needs the right to update the owner's finalizers"
    for group, kind in (("hakeeper.io", "loadbalancerpools"), ("hakeeper.io", "replicateddatabases"),
                        ("hakeeper.io", "degradationpolicies"))
}
# Used by a path of the code that no e2e test takes yet; each names the path. None now:
# test_database_credentials takes `secrets patch`, and the DegradationPolicy namespace opt-in
# test `deployments get` (restoring what was shed in a namespace no longer allowed).
NOT_EXERCISED: dict[Rule, str] = {}
HELD_TO_GRANT = "held to grant: a Role may grant only what its writer holds (RBAC escalation prevention)"


def expand(rules: list[dict]) -> set[Rule]:
    """Every (group, resource, verb) a list of RBAC PolicyRules grants (no wildcards: the chart
    has none, and a wildcard would fail this test's purpose anyway)."""
    granted = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"a wildcard rule: {rule}"
                    granted.add((group, resource, verb))
    return granted


def audit_log(cluster: Cluster) -> pathlib.Path:
    local = getattr(cluster, "local", None)
    if local is not None:
        return local.control_plane.audit_log
    path = os.environ.get("HAKEEPER_E2E_AUDIT_LOG")
    assert path, ("this test reads the API server's audit log: on a cluster other than the local one, "
                  "point HAKEEPER_E2E_AUDIT_LOG at it (policy: Metadata for group system:serviceaccounts)")
    return pathlib.Path(path)


def requests_by_user(log: pathlib.Path) -> dict[str, list[dict]]:
    """username → one audit event per resource request (its first: a watch still open when the
    run ends has a ResponseStarted event and no ResponseComplete one)."""
    found: dict[str, list[dict]] = collections.defaultdict(list)
    seen: set[str] = set()
    with log.open() as lines:
        for line in lines:
            event = json.loads(line)
            if "objectRef" in event and event["auditID"] not in seen:
                seen.add(event["auditID"])
                found[event["user"]["username"]].append(event)
    return found


def rules_of(event: dict) -> list[Rule]:
    """The rules one request was authorized by: a server-side apply that created its object
    (201) is authorized as create too, within the patch request (Kubernetes API concepts,
    "Patch and apply")."""
    ref = event["objectRef"]
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    rules = [(ref.get("apiGroup", ""), resource, event["verb"])]
    if event["verb"] == "patch" and (event.get("responseStatus") or {}).get("code") == 201:
        rules.append((ref.get("apiGroup", ""), resource, "create"))
    return rules


def forbidden(event: dict) -> bool:
    """The authorizer's own verdict: a 403 can also mean a namespace being deleted."""
    return (event.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"


def compare(events: list[dict], granted: set[Rule], exempt: dict[Rule, str]) -> tuple[list[str], list[str], str]:
    """(requests refused for want of a rule, granted rules never used nor exempt, the table as
    text) for one identity. A refused request of a granted rule came after `helm uninstall`
    deleted the binding: counted in the table, not a missing rule."""
    used = collections.Counter(rule for e in events for rule in rules_of(e))
    late = collections.Counter(rule for e in events if forbidden(e) for rule in rules_of(e))
    refused = sorted({f"{e['verb']} {e['requestURI']}" for e in events
                      if forbidden(e) and not set(rules_of(e)) <= granted})
    unused = sorted(f"{g or 'core'} {r} {v}" for g, r, v in granted - set(used) if (g, r, v) not in exempt)
    rows = [f"  {'granted' if rule in granted else 'NOT GRANTED':11} {used.get(rule, 0):7}  "
            f"{rule[0] or 'core'} {rule[1]} {rule[2]}"
            + (f"  ({exempt[rule].split(':')[0]})" if rule in exempt and not used.get(rule) else "")
            + (f"  ({late[rule]} refused: the binding was gone)" if late.get(rule) else "")
            for rule in sorted(granted | set(used))]
    return refused, unused, "\n".join(rows)


def test_the_operator_and_the_agents_use_exactly_what_they_are_granted(operator, pytestconfig):
    rendered = operator.helm("get", "manifest", "hakeeper", "--namespace", OPERATOR_NAMESPACE).stdout
    roles = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ClusterRole"]
    assert len(roles) == 1, [r["metadata"]["name"] for r in roles]
    operator_granted = expand(roles[0]["rules"])
    agent_granted = expand(next(d for d in agent_rbac("pool", "ns") if d["kind"] == "Role")["rules"])

    by_user = requests_by_user(audit_log(operator))
    operator_user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:hakeeper"
    agents = sorted(u for u in by_user if u.endswith("-agent") and u.startswith("system:serviceaccount:"))
    assert by_user.get(operator_user), f"no request of {operator_user} in the audit log"
    assert agents, "no balancer agent made a request: the log or the suite is not what this test expects"

    exempt = {**NOT_REQUESTED, **NOT_EXERCISED, **{rule: HELD_TO_GRANT for rule in agent_granted}}
    missing_to_grant = agent_granted - operator_granted
    assert not missing_to_grant, f"the agent's Role grants what the operator does not hold: {missing_to_grant}"
    refused, unused, table = compare(by_user[operator_user], operator_granted, exempt)
    agent_refused, agent_unused, agent_table = compare([e for u in agents for e in by_user[u]], agent_granted, {})
    report = (f"least privilege (requests in the audit log per granted rule):\n operator {operator_user}\n{table}\n"
              f" balancer agents ({len(agents)} ServiceAccounts)\n{agent_table}")
    pytestconfig.stash[CLUSTER_REPORT] = pytestconfig.stash.get(CLUSTER_REPORT, "") + "\n" + report
    assert not refused and not agent_refused, f"refused for want of a rule: {refused + agent_refused}\n{report}"
    assert not unused, f"the chart grants the operator rules it never used: {unused}\n{report}"
    assert not agent_unused, f"the agent's Role grants rules no agent used: {agent_unused}\n{report}"
