"""The three kinds: names, scope and the columns `kubectl get` prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hakeeper.api import degradationpolicy as dp
from hakeeper.api import loadbalancerpool as lbp
from hakeeper.api import replicateddatabase as rdb
from hakeeper.api.common import GROUP, VERSION
from hakeeper.api.conditions import ConditionType


def condition_column(type_: ConditionType) -> str:
    """The JSONPath of a condition's status, for a printer column."""
    return f'.status.conditions[?(@.type=="{type_}")].status'


READY = condition_column(ConditionType.READY)


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[dict, ...]
    description: str
    rules: tuple[dict, ...] = ()
    """CEL rules on the whole object (x-kubernetes-validations of the root: metadata.name)."""

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{VERSION}"


def column(name: str, json_path: str, type_: str = "string", priority: int = 0,
           description: str = "") -> dict[str, Any]:
    """One additionalPrinterColumns entry of a CRD."""
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if priority:
        col["priority"] = priority
    if description:
        col["description"] = description
    return col


AGE = column("Age", ".metadata.creationTimestamp", "date")

LOAD_BALANCER_POOL = Kind(
    kind="LoadBalancerPool",
    plural="loadbalancerpools",
    singular="loadbalancerpool",
    short_names=("lbp",),
    spec=lbp.LoadBalancerPoolSpec,
    status=lbp.LoadBalancerPoolStatus,
    description=("A pool of HAProxy or keepalived/LVS balancers kept in step with the backend pods it selects, "
                 "or DNS records of its healthy targets published through ExternalDNS."),
    rules=lbp.POOL_NAME_RULES,
    columns=(
        column("Engine", ".spec.engine"),
        column("Algorithm", ".status.algorithm"),
        column("Backends", ".status.backends.ready", "integer", description="ready backends"),
        column("Total", ".status.backends.total", "integer", description="all backends"),
        column("Ready", READY),
        column("Hostname", ".spec.dns.hostname", priority=1, description="engine dns: the published name"),
        column("Published", ".status.publishedAddresses", priority=1,
               description="engine dns: the addresses the record carries"),
        AGE,
    ),
)

REPLICATED_DATABASE = Kind(
    kind="ReplicatedDatabase",
    plural="replicateddatabases",
    singular="replicateddatabase",
    short_names=("rdb",),
    spec=rdb.ReplicatedDatabaseSpec,
    status=rdb.ReplicatedDatabaseStatus,
    description="A MySQL or MariaDB primary with replicas, read-write and read-only Services, and automatic failover.",
    columns=(
        column("Flavor", ".spec.flavor"),
        column("Primary", ".status.currentPrimary"),
        column("Ready", ".status.readyMembers", "integer", description="members up and replicating"),
        column("Members", ".spec.replicas", "integer"),
        column("Phase", ".status.phase"),
        column("Last-Failover", ".status.lastFailoverTime", "date"),
        column("Available", condition_column(ConditionType.AVAILABLE), priority=1),
        AGE,
    ),
)

DEGRADATION_POLICY = Kind(
    kind="DegradationPolicy",
    plural="degradationpolicies",
    singular="degradationpolicy",
    short_names=("dp",),
    spec=dp.DegradationPolicySpec,
    status=dp.DegradationPolicyStatus,
    description=("Sheds low-priority Deployments while alerting metrics cross their thresholds, "
                 "and restores them after."),
    columns=(
        column("Mode", ".spec.mode"),
        column("State", ".status.state"),
        column("Shed", ".status.shedCount", "integer", description="Deployments switched off"),
        column("Metrics", condition_column(ConditionType.METRICS_AVAILABLE)),
        column("Ready", READY),
        AGE,
    ),
)

KINDS = (LOAD_BALANCER_POOL, REPLICATED_DATABASE, DEGRADATION_POLICY)
CATEGORY = "hakeeper"
