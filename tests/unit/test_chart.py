"""The Helm chart, rendered by the real helm: lint, least-privilege RBAC, a hardened pod,
the two watch scopes, and the values schema.

`helm template` is given the Kubernetes version the e2e tier runs (hack/k8s/go.mod), so
the chart's kubeVersion constraint is checked against it and not against helm's default.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest
import yaml

from hakeeper.cli import parser as cli_parser
from hakeeper.cli import peering_priority

from ..support.tools import tool

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/hakeeper"
RELEASE_NAMESPACE = "hakeeper-system"


def _kube_version() -> str:
    match = re.search(r"^require k8s\.io/kubernetes (v\S+)", (ROOT / "hack/k8s/go.mod").read_text(), re.M)
    assert match, "hack/k8s/go.mod pins no k8s.io/kubernetes version"
    return match.group(1)


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool("helm", build=False)), *args], capture_output=True, text=True, timeout=120)


def render(*values: str, release: str = "hakeeper", kube_version: str | None = None) -> list[dict]:
    sets = [arg for value in values for arg in ("--set", value)]
    result = helm("template", release, str(CHART), "--namespace", RELEASE_NAMESPACE,
                  "--kube-version", kube_version or _kube_version(), *sets)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def objects(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = objects(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs: list[dict]) -> dict:
    (operator,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


def grants(rules: list[dict]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, however the rules happen to be grouped."""
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


# Everything the operator may do in a namespace it serves: what the e2e suite's audit log shows
# it uses (tests/e2e/test_least_privilege.py), which this table follows. A change here is a
# change of the operator's privileges: make it together with the rule and its reason in _helpers.tpl.
APPLIED = {"create", "patch"}  # written by server-side apply, which creates what is missing
WATCHED = {"list", "watch"}  # a pool's owned kinds: one edited or deleted is applied again
NAMESPACED = {
    ("hakeeper.io", "loadbalancerpools"): {"list", "watch", "patch", "get"},  # get: a policy's request classes
    ("hakeeper.io", "replicateddatabases"): {"list", "watch", "patch"},
    ("hakeeper.io", "degradationpolicies"): {"list", "watch", "patch"},
    ("hakeeper.io", "loadbalancerpools/status"): {"patch"},
    ("hakeeper.io", "replicateddatabases/status"): {"patch"},
    ("hakeeper.io", "degradationpolicies/status"): {"patch"},
    ("hakeeper.io", "loadbalancerpools/finalizers"): {"update"},
    ("hakeeper.io", "replicateddatabases/finalizers"): {"update"},
    ("hakeeper.io", "degradationpolicies/finalizers"): {"update"},
    ("", "events"): {"create"},
    ("", "pods"): {"list", "watch", "patch"},
    ("", "pods/eviction"): {"create"},  # a database's rollout restarts its members
    ("", "services"): {"get", *WATCHED, *APPLIED},  # get: the address of a haproxy pool a dns pool publishes
    ("", "serviceaccounts"): WATCHED | APPLIED,
    ("", "configmaps"): {"get", *WATCHED, *APPLIED},
    ("", "secrets"): {"get", "create", "patch"},
    ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
    ("apps", "deployments"): {"get", "list", "watch", *APPLIED},
    ("apps", "daemonsets"): {"delete", *WATCHED, *APPLIED},  # a refused lvs pool's DaemonSet goes
    ("apps", "statefulsets"): {"get", *WATCHED, *APPLIED},  # watched: drift repair
    ("batch", "cronjobs"): {"get", "delete", *APPLIED},  # a database's scheduled backups
    ("batch", "jobs"): {"list"},  # their runs' outcomes
    ("", "persistentvolumeclaims"): {"get"},  # a backup's volume target, checked before a run
    ("policy", "poddisruptionbudgets"): {"delete", *WATCHED, *APPLIED},
    ("rbac.authorization.k8s.io", "roles"): WATCHED | APPLIED,
    ("rbac.authorization.k8s.io", "rolebindings"): WATCHED | APPLIED,
    ("autoscaling", "horizontalpodautoscalers"): {"list"},  # DegradationPolicy names a shed Deployment's HPA
    ("keda.sh", "scaledobjects"): {"list", "patch"},  # and pauses its KEDA ScaledObject while shed
    ("externaldns.k8s.io", "dnsendpoints"): {"delete", *APPLIED},  # an engine dns pool's records
}
CRDS = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("scheduling.k8s.io", "priorityclasses"): {"list"},  # DegradationPolicy tiers by pod priority
        ("", "namespaces"): {"get"}}  # and the namespaces it lists: opted in, protected
CLUSTER_WIDE = {**NAMESPACED, **CRDS, ("kopf.dev", "clusterkopfpeerings"): {"list", "watch", "patch"}}
PER_NAMESPACE = {**NAMESPACED, ("kopf.dev", "kopfpeerings"): {"list", "watch", "patch"}}
CLUSTER_READS_WHEN_NAMESPACED = {**CRDS, ("", "namespaces"): {"get", "list", "watch"}}


def test_lint_strict_is_clean():
    result = helm("lint", "--strict", str(CHART), "--kube-version", _kube_version())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_chart_refuses_a_kubernetes_older_than_it_supports():
    result = helm("template", "hakeeper", str(CHART), "--kube-version", "v1.29.0")
    assert result.returncode != 0
    assert "incompatible with Kubernetes v1.29.0" in result.stderr


def test_cluster_role_grants_exactly_the_least_privilege_table():
    docs = render()
    role = one(docs, "ClusterRole")
    assert grants(role["rules"]) == CLUSTER_WIDE
    assert not objects(docs, "Role") and not objects(docs, "RoleBinding")


def test_no_rule_uses_wildcards_or_privilege_verbs():
    for values in ((), ("watchNamespaces={a,b}",)):
        docs = render(*values)
        for role in objects(docs, "ClusterRole") + objects(docs, "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
                assert not {"bind", "escalate", "impersonate"} & set(rule["verbs"]), rule


def test_cluster_role_is_bound_to_the_operator_service_account():
    docs = render()
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": one(docs, "ClusterRole")["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hakeeper", "namespace": RELEASE_NAMESPACE}]


def test_service_account_is_named_after_the_release():
    docs = render()
    account = one(docs, "ServiceAccount")["metadata"]
    assert (account["name"], account["namespace"]) == ("hakeeper", RELEASE_NAMESPACE)
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "hakeeper"

    other = render(release="edge")
    assert one(other, "ServiceAccount")["metadata"]["name"] == "edge-hakeeper"

    named = render("serviceAccount.name=robot")
    assert one(named, "ServiceAccount")["metadata"]["name"] == "robot"
    assert one(named, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "robot"
    assert one(named, "ClusterRoleBinding")["subjects"][0]["name"] == "robot"


def test_pod_runs_non_root_on_a_read_only_root_filesystem():
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["fsGroup"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(docs)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    # the one writable place is an emptyDir at /tmp
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container(docs)["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                            "limits": {"cpu": "500m", "memory": "256Mi"}}


def test_probes_hit_the_liveness_endpoint_the_operator_serves():
    docs = render()
    operator = container(docs)
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    args = cli_parser().parse_args(operator["args"])
    for probe in ("livenessProbe", "readinessProbe"):
        get = operator[probe]["httpGet"]
        port = ports.get(get["port"], get["port"])
        assert (port, get["path"]) == (8080, "/healthz")
        assert args.liveness == f"http://0.0.0.0:{port}{get['path']}"


def test_cluster_wide_by_default():
    docs = render()
    args = cli_parser().parse_args(container(docs)["args"])
    assert args.command == "run"
    assert args.all_namespaces and not args.namespace
    peering = one(docs, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert args.peering == peering["metadata"]["name"] == "hakeeper"
    assert not objects(docs, "KopfPeering")


def test_watch_namespaces_gives_a_role_in_each_and_no_cluster_wide_pod_access():
    docs = render("watchNamespaces={a,b}")
    operator_args = container(docs)["args"]
    assert " ".join(operator_args).count("-n ") == 2 and "-n a -n b" in " ".join(operator_args)
    args = cli_parser().parse_args(operator_args)
    assert args.namespace == ["a", "b"] and not args.all_namespaces

    roles = {r["metadata"]["namespace"]: r for r in objects(docs, "Role") if not r["metadata"]["name"].endswith("-uninstall")}
    assert set(roles) == {"a", "b"}
    for role in roles.values():
        assert grants(role["rules"]) == PER_NAMESPACE
    bindings = {b["metadata"]["namespace"]: b for b in objects(docs, "RoleBinding")
                if not b["metadata"]["name"].endswith("-uninstall")}
    assert set(bindings) == {"a", "b"}
    for namespace, binding in bindings.items():
        assert binding["roleRef"]["name"] == roles[namespace]["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hakeeper",
                                        "namespace": RELEASE_NAMESPACE}]

    cluster_roles = objects(docs, "ClusterRole")
    for role in cluster_roles:
        assert ("", "pods") not in grants(role["rules"])
    assert [grants(r["rules"]) for r in cluster_roles] == [CLUSTER_READS_WHEN_NAMESPACED]

    peerings = objects(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert {p["metadata"]["name"] for p in peerings} == {args.peering}
    assert not objects(docs, "ClusterKopfPeering")


def test_log_format_and_verbose_reach_the_command_line():
    args = cli_parser().parse_args(container(render("logFormat=json", "verbose=true"))["args"])
    assert args.log_format == "json" and args.verbose
    args = cli_parser().parse_args(container(render())["args"])
    assert args.log_format == "full" and not args.verbose


def test_agent_image_is_the_operator_image():
    for values, image in (((), "ghcr.io/hakeeper/hakeeper:0.1.0"),
                          (("image.repository=hakeeper", "image.tag=e2e"), "hakeeper:e2e")):
        operator = container(render(*values))
        env = {e["name"]: e for e in operator["env"]}
        assert operator["image"] == env["HAKEEPER_AGENT_IMAGE"]["value"] == image
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_each_replica_takes_its_own_peering_priority():
    # kopf pauses every replica that shares a priority with another, so two pods of the
    # Deployment must never pass the same one: the CLI derives it from POD_NAME.
    operator = container(render())
    env = {e["name"]: e for e in operator["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "--priority" not in operator["args"] and "command" not in operator
    first = peering_priority(None, "hakeeper-6d5f7b9c4d-x2x8k")
    second = peering_priority(None, "hakeeper-6d5f7b9c4d-q7wzn")
    assert first != second and first == peering_priority(None, "hakeeper-6d5f7b9c4d-x2x8k")
    assert peering_priority(7, "hakeeper-6d5f7b9c4d-x2x8k") == 7  # an explicit --priority wins
    assert peering_priority(None, None) == 0


def test_disruption_budget_only_with_a_standby():
    docs = render()
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= \
        one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    assert not objects(render("replicaCount=1"), "PodDisruptionBudget")


def test_default_anti_affinity_spreads_replicas_over_nodes():
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector


def test_scheduling_values_reach_the_pod():
    pod = one(render("priorityClassName=system-cluster-critical", "nodeSelector.role=ops",
                     "tolerations[0].key=ops", "tolerations[0].operator=Exists",
                     "imagePullSecrets[0].name=registry", "podAnnotations.team=sre"),
              "Deployment")["spec"]["template"]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["nodeSelector"] == {"role": "ops"}
    assert pod["spec"]["tolerations"] == [{"key": "ops", "operator": "Exists"}]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["metadata"]["annotations"] == {"team": "sre", "prometheus.io/scrape": "true",
                                              "prometheus.io/port": "8081", "prometheus.io/path": "/metrics"}


@pytest.mark.parametrize(("value", "complaint"), [
    ("replicaCount=-1", "at '/replicaCount': minimum"),
    ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
    ("logFormat=xml", "at '/logFormat': value must be one of"),
    ("watchNamespaces={Bad_NS}", "at '/watchNamespaces/0'"),
    ("serviceAccount.extra=1", "additional properties 'extra' not allowed"),
    ("verbose=maybe", "at '/verbose'"),
])
def test_values_schema_refuses_bad_values(value, complaint):
    result = helm("template", "hakeeper", str(CHART), "--kube-version", _kube_version(), "--set", value)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr, result.stderr


def test_metrics_are_served_and_described_for_prometheus():
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container["args"][container["args"].index("--metrics-port") + 1] == "8081"
    service = next(d for d in objects(docs, "Service") if d["metadata"]["name"].endswith("-metrics"))
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert not objects(docs, "ServiceMonitor") and not objects(docs, "PrometheusRule")  # off: no CRDs assumed
    rules = next(d for d in objects(docs, "ConfigMap") if d["metadata"]["name"].endswith("-alerts"))
    assert "HakeeperDatabaseFailover" in rules["data"]["hakeeper.rules.yaml"]


def test_prometheus_operator_objects_and_the_dashboard_when_asked():
    docs = render("metrics.serviceMonitor.enabled=true", "alerts.prometheusRule.enabled=true",
                  "dashboard.enabled=true", "metrics.serviceMonitor.labels.release=kube-prometheus")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    rule = one(docs, "PrometheusRule")
    assert {g["name"] for g in rule["spec"]["groups"]} >= {"hakeeper.databases", "hakeeper.pools"}
    dashboard = next(d for d in objects(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["hakeeper.json"])["uid"] == "hakeeper"


def test_no_metrics_port_means_no_metrics_objects():
    docs = render("metrics.port=0")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert all(p["name"] != "metrics" for p in container["ports"])
    assert not [d for d in objects(docs, "Service") if d["metadata"]["name"].endswith("-metrics")]


def test_the_peering_lifetime_reaches_the_operator_and_a_short_one_is_refused() -> None:
    """A standby takes over within peering.lifetime seconds of a crash (kopf's default: 60)."""
    from hakeeper.platform.settings import Settings

    assert Settings.from_env({}).peering_lifetime == 12
    for values, lifetime in (((), "12"), (("peering.lifetime=20",), "20")):
        env = {e["name"]: e for e in container(render(*values))["env"]}
        assert env["HAKEEPER_PEERING_LIFETIME"]["value"] == lifetime
        assert Settings.from_env({"HAKEEPER_PEERING_LIFETIME": lifetime}).peering_lifetime == int(lifetime)
    assert Settings.from_env({"HAKEEPER_PEERING_LIFETIME": "30"}).peering_lifetime == 30
    with pytest.raises(ValueError, match="at least 11"):
        Settings.from_env({"HAKEEPER_PEERING_LIFETIME": "5"})


def test_trusted_policy_namespaces_reach_the_operator_settings():
    from hakeeper.platform.settings import Settings

    def trusted(*values: str) -> frozenset[str]:
        env = {e["name"]: e.get("value", "") for e in container(render(*values))["env"] if "value" in e}
        return Settings.from_env(env).trusted_policy_namespaces

    assert trusted() == frozenset()  # by default a policy sheds only where it is let in
    assert trusted("degradationPolicy.trustedNamespaces={ops,platform}") == {"ops", "platform"}
    assert trusted("degradationPolicy.trustedNamespaces={*}") == {"*"}



def test_lvs_allowances_reach_the_operator_settings():
    from hakeeper.platform.settings import Settings

    def settings(*values: str) -> Settings:
        return Settings.from_env({e["name"]: e["value"] for e in container(render(*values))["env"] if "value" in e})

    assert settings().lvs_allowed_namespaces == frozenset() == settings().lvs_allowed_images  # lvs nowhere
    allowed = settings("lvs.allowedNamespaces={edge,team-*}", "lvs.allowedImages={registry.example/keepalived:*}")
    assert allowed.lvs_allowed_namespaces == {"edge", "team-*"}
    assert allowed.lvs_allowed_images == {"registry.example/keepalived:*"}


def _hook(docs: list[dict]) -> dict:
    return one(docs, "Job")


def test_uninstall_hook_runs_before_anything_is_deleted_and_leaves_no_job_when_it_succeeds():
    docs = render()
    job = _hook(docs)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-delete"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hakeeper" and pod["restartPolicy"] == "Never"
    (hook,) = pod["containers"]
    assert hook["image"] == container(docs)["image"]
    args = cli_parser().parse_args(hook["args"])
    assert args.func.__name__ == "_uninstall"
    assert args.operator == f"{RELEASE_NAMESPACE}/hakeeper" and args.all_namespaces and args.timeout == 240
    # the same securityContext as the operator's, from the one helper
    deployment_pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == deployment_pod["securityContext"]
    assert hook["securityContext"] == container(docs)["securityContext"]
    assert job["spec"]["activeDeadlineSeconds"] > args.timeout


def test_uninstall_hook_pod_is_not_selected_as_an_operator_pod():
    # the hook waits until the operator Deployment's pods are gone: it must not be one of them
    docs = render()
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    labels = _hook(docs)["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in objects(render("replicaCount=2"), kind):
            chosen = obj["spec"]["selector"]
            chosen = chosen.get("matchLabels", chosen)
            assert not chosen.items() <= labels.items(), obj["metadata"]["name"]


def test_uninstall_hook_follows_the_watched_namespaces_with_a_role_to_stop_the_operator():
    docs = render("watchNamespaces={a,b}")
    args = cli_parser().parse_args(_hook(docs)["spec"]["template"]["spec"]["containers"][0]["args"])
    assert args.namespace == ["a", "b"] and not args.all_namespaces
    role = next(r for r in objects(docs, "Role") if r["metadata"]["name"] == "hakeeper-uninstall")
    assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["hakeeper"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    binding = next(b for b in objects(docs, "RoleBinding") if b["metadata"]["name"] == "hakeeper-uninstall")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hakeeper", "namespace": RELEASE_NAMESPACE}]
    # cluster-wide, the ClusterRole covers it: no extra Role
    assert not [r for r in objects(render(), "Role")]


def test_uninstall_hook_can_be_turned_off_and_its_timeout_set():
    assert not objects(render("uninstallHook.enabled=false"), "Job")
    assert [b["metadata"]["name"] for b in objects(render("uninstallHook.enabled=false", "watchNamespaces={a}"),
                                                   "RoleBinding")] == ["hakeeper"]
    job = _hook(render("uninstallHook.timeoutSeconds=600"))
    assert cli_parser().parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"]).timeout == 600
    for value, complaint in (("uninstallHook.timeoutSeconds=5", "minimum"),
                             ("uninstallHook.unknown=1", "additional properties 'unknown' not allowed")):
        result = helm("template", "hakeeper", str(CHART), "--kube-version", _kube_version(), "--set", value)
        assert result.returncode != 0 and complaint in result.stderr, result.stderr
