"""Status conditions: every condition type and reason hakeeper writes, and how one is set.

Conditions follow the Kubernetes API conventions
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties):
`type` and `reason` are CamelCase words a program matches on, `message` is for people,
`lastTransitionTime` moves only when `status` changes, and `observedGeneration` is the spec
generation the condition was computed for. Types and reasons are part of the API (`kubectl wait
--for=condition=Ready`, alert rules and the tests match on them), so each is defined once, here,
and its string never changes. The functions are pure.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from hakeeper.api.common import Condition

ConditionStatus = Literal["True", "False", "Unknown"]


class ConditionType(StrEnum):
    """The `type` of every condition, all kinds. Each kind's Ready sums up its other conditions."""

    READY = "Ready"
    # LoadBalancerPool
    BACKENDS_AVAILABLE = "BackendsAvailable"
    """Some backend endpoint is ready."""
    CONFIG_APPLIED = "ConfigApplied"
    """Every ready balancer pod runs the current config (its agent reported the hash)."""
    VIRTUAL_IP_UNIQUE = "VirtualIPUnique"
    """Engine lvs: at most one node holds the virtual IP (no VRRP split brain)."""
    PUBLISHED = "Published"
    """Engine dns: the pool's DNSEndpoint holds the current records and ExternalDNS has read that
    generation of it (its status.observedGeneration)."""
    # ReplicatedDatabase
    AVAILABLE = "Available"
    """A writable primary exists."""
    HEALTHY = "Healthy"
    """Every member replicates from the primary, in time."""
    FAILOVER_IN_PROGRESS = "FailoverInProgress"
    RESEED_REQUIRED = "ReseedRequired"
    """A member must be rebuilt from another member's data (errant, or its binary logs purged)."""
    LAST_BACKUP_SUCCEEDED = "LastBackupSucceeded"
    """spec.backup: whether the last backup run succeeded (CloudNativePG's name for it)."""
    # DegradationPolicy
    METRICS_AVAILABLE = "MetricsAvailable"
    """Every trigger's query returned a value."""
    DEGRADED = "Degraded"
    """Deployments are shed."""
    CONFLICT = "Conflict"
    """Something else scaled a shed Deployment back up."""
    NAMESPACES_ALLOWED = "NamespacesAllowed"
    """The policy may shed in every namespace it lists (degradationpolicy/tenancy.py)."""


class CommonReason(StrEnum):
    """Reasons any kind's Ready may carry."""

    INVALID_SPEC = "InvalidSpec"
    """The stored spec fails the schema (objects stored under an older one); the message says where."""


class PoolReason(StrEnum):
    """Reasons of a LoadBalancerPool's conditions."""

    # BackendsAvailable
    BACKENDS_READY = "BackendsReady"
    NO_BACKENDS = "NoBackends"
    NO_READY_BACKENDS = "NoReadyBackends"
    # ConfigApplied
    APPLIED = "Applied"
    APPLYING = "Applying"
    NO_BALANCER_READY = "NoBalancerReady"
    IPVS_UNAVAILABLE = "IPVSUnavailable"
    """A balancer node's kernel lacks IPVS (engine lvs): keepalived cannot run there."""
    # VirtualIPUnique (engine lvs)
    HELD_ONCE = "HeldOnce"
    NOT_HELD = "NotHeld"
    MULTIPLE_MASTERS = "MultipleMasters"
    """More than one node is VRRP master and holds the virtual IP: a split brain."""
    # Ready (otherwise the failing condition's reason)
    SERVING = "Serving"
    ENGINE_NOT_ALLOWED = "EngineNotAllowed"
    """Engine lvs in a namespace the cluster admin does not allow it in (lvs/admission.py)."""
    IMAGE_NOT_ALLOWED = "ImageNotAllowed"
    """Engine lvs with an image the cluster admin does not allow (lvs/admission.py)."""
    VIRTUAL_ROUTER_ID_IN_USE = "VirtualRouterIDInUse"
    """Engine lvs: an older pool runs VRRP with the same virtualRouterID on the same interface and
    possibly the same nodes (lvs/vrid.py)."""
    TLS_SECRET_INVALID = "TLSSecretInvalid"
    """spec.tls names a Secret that is missing or holds no usable certificate and key
    (loadbalancerpool/haproxy/tls_secret.py); the balancers are not changed."""
    # Engine dns (loadbalancerpool/dns/): BackendsAvailable counts the targets (backends, or the
    # pools of dns.pools), and Published says whether ExternalDNS has the records
    NO_HEALTHY_TARGETS = "NoHealthyTargets"
    """Engine dns: no target is healthy; every candidate is published (fail open, as Route 53 does
    with a record set whose health checks all fail) rather than none."""
    TARGET_POOL_MISSING = "TargetPoolMissing"
    """Engine dns: a pool named in dns.pools does not exist in the namespace (the others are published)."""
    TARGET_POOL_UNADDRESSABLE = "TargetPoolUnaddressable"
    """Engine dns: a pool named in dns.pools has no address to publish (engine dns, or a Service
    without an IPv4 address yet); the others are published."""
    RECORDS_PUBLISHED = "RecordsPublished"
    """Engine dns: ExternalDNS has read the DNSEndpoint's current generation."""
    AWAITING_EXTERNAL_DNS = "AwaitingExternalDNS"
    """Engine dns: the DNSEndpoint is written, and ExternalDNS has not read this generation of it yet
    (it is not running, or watches other namespaces or another source)."""
    NO_RECORDS = "NoRecords"
    """Engine dns: no target at all, so no DNSEndpoint: the name is not published."""
    DNS_ENDPOINT_CRD_MISSING = "DNSEndpointCRDMissing"
    """Engine dns: the cluster has no DNSEndpoint kind (ExternalDNS's CRD, dnsendpoints.externaldns.k8s.io,
    is not installed), so nothing can be published."""


class DatabaseReason(StrEnum):
    """Reasons of a ReplicatedDatabase's conditions.

    Healthy=False carries the phase (Initializing, Degraded, Failed, Lost, Switching) as its reason.
    """

    # Available
    PRIMARY_WRITABLE = "PrimaryWritable"
    NO_WRITABLE_PRIMARY = "NoWritablePrimary"
    # Healthy
    ALL_REPLICATING = "AllReplicating"
    # FailoverInProgress
    FAILOVER_IN_PROGRESS = "FailoverInProgress"
    IDLE = "Idle"
    # Ready
    AVAILABLE = "Available"
    NOT_AVAILABLE = "NotAvailable"
    INITIALIZING = "Initializing"
    """The spec was accepted and the members are being set up: no primary yet, or the first
    one opened and the replicas not replicating from it yet."""
    REPLICAS_NOT_REPLICATING = "ReplicasNotReplicating"
    """The primary takes writes but fewer replicas replicate from it than acknowledge a write
    (semiSync.waitForReplicaCount, or one): a failover now could not be lossless."""
    FAILOVER_REFUSED = "FailoverRefused"
    """The primary is lost and durability Lossless refuses every candidate (status.phase Lost;
    the message says why and how to force it)."""
    CREDENTIALS_MISSING = "CredentialsMissing"
    """The credentials Secret, or one of its keys, is missing."""
    CREDENTIALS_INVALID = "CredentialsInvalid"
    """A password in the credentials Secret has a line break or NUL."""
    # ReseedRequired
    NO_RESEED_REQUIRED = "NoneRequired"
    AWAITING_APPROVAL = "AwaitingApproval"
    """spec.autoReseed is false: the message names the member and the annotation that starts it."""
    RESEEDING = "Reseeding"
    # Ready, spec.restore
    RESTORING = "Restoring"
    """The first member is being restored from a backup (download, check, binary log replay)."""
    RESTORE_FAILED = "RestoreFailed"
    """The restore cannot go on (no such backup, a point in time before the oldest backup, a
    checksum mismatch, the store unreachable); the message says which. Nothing is deleted."""
    # LastBackupSucceeded
    BACKUP_SUCCEEDED = "BackupSucceeded"
    BACKUP_FAILED = "BackupFailed"
    NO_BACKUP_YET = "NoBackupYet"
    BACKUP_CONFIG_INVALID = "BackupConfigInvalid"
    """spec.backup cannot be carried out (the store's Secret or one of its keys is missing, the
    claim does not exist); the message says which, and no CronJob runs until it is fixed."""


class PolicyReason(StrEnum):
    """Reasons of a DegradationPolicy's conditions."""

    # Ready
    EVALUATING = "Evaluating"
    SECRET_MISSING = "SecretMissing"
    """A Secret the Prometheus connection needs (bearer token, CA) is missing."""
    EVALUATION_FAILED = "EvaluationFailed"
    """An evaluation raised; the policy keeps evaluating and says what failed."""
    # MetricsAvailable
    VALUES = "Values"
    UNAVAILABLE = "Unavailable"
    NO_DATA = "NoData"
    # Degraded
    SHED = "Shed"
    DRY_RUN = "DryRun"
    NOTHING_SHED = "NothingShed"
    # Conflict
    SCALED_BY_OTHERS = "ScaledByOthers"
    NO_CONFLICT = "NoConflict"
    # NamespacesAllowed
    ALLOWED = "Allowed"
    NAMESPACE_REFUSED = "NamespaceRefused"
    """A listed namespace has not opted in, is protected or does not exist."""


class Verdict(NamedTuple):
    """What one condition says now, before it is stamped with a time and a generation."""

    status: bool
    reason: str
    message: str


def now_iso() -> str:
    """The current time in RFC 3339, UTC, whole seconds (lastTransitionTime's precision)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_conditions(conditions: Iterable[Condition | Mapping[str, Any]] | None) -> list[Condition]:
    """Conditions as models; dicts, as read from a status, are validated (pydantic's
    ValidationError for one the CRD schema would have refused)."""
    return [c if isinstance(c, Condition) else Condition.model_validate(c) for c in conditions or ()]


def with_condition(
    conditions: Iterable[Condition | Mapping[str, Any]] | None,
    type_: str,
    status: bool | ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[Condition]:
    """The conditions with `type_` set (appended when new, in place otherwise).

    lastTransitionTime becomes `now` (default: the current time) only when the status changes
    or the condition had none, as the API conventions ask; the others are kept as they are.
    """
    text: ConditionStatus = ("True" if status else "False") if isinstance(status, bool) else status
    out = parse_conditions(conditions)
    for i, cond in enumerate(out):
        if cond.type == type_:
            moved = cond.status != text or not cond.last_transition_time
            out[i] = cond.model_copy(update={
                "status": text, "reason": str(reason), "message": message, "observed_generation": generation,
                "last_transition_time": (now or now_iso()) if moved else cond.last_transition_time})
            return out
    out.append(Condition(type=str(type_), status=text, reason=str(reason), message=message,
                         last_transition_time=now or now_iso(), observed_generation=generation))
    return out


def with_verdicts(
    conditions: Iterable[Condition | Mapping[str, Any]] | None,
    verdicts: Iterable[tuple[str, Verdict]],
    generation: int | None,
    now: str | None = None,
) -> list[Condition]:
    """with_condition for each (type, verdict), in order."""
    out = parse_conditions(conditions)
    for type_, verdict in verdicts:
        out = with_condition(out, type_, verdict.status, verdict.reason, verdict.message, generation, now)
    return out


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of that type, or None."""
    return next((c for c in conditions if c.type == type_), None)


def set_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str, status: bool | ConditionStatus,
                  reason: str, message: str, generation: int | None, now: str | None = None) -> list[dict[str, Any]]:
    """with_condition on a status as read from the API, returning the conditions as written to it
    (camelCase dicts). For callers that patch a status without its model."""
    return [c.wire() for c in with_condition(conditions, type_, status, reason, message, generation, now)]


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of that type in a status as read from the API, or None."""
    return next((c for c in conditions or () if c.get("type") == type_), None)


def condition_status(status: Mapping[str, Any], type_: str) -> bool | None:
    """Whether the condition of that type in a status as read from the API is True; None when
    the status has no such condition (or its status is Unknown)."""
    condition = get_condition(status.get("conditions"), type_)
    value = None if condition is None else condition.get("status")
    return {"True": True, "False": False}.get(value or "")


def pod_ready(pod: Mapping[str, Any] | None) -> bool:
    """Whether a pod as read from the API has condition Ready=True (False for no pod)."""
    return pod is not None and condition_status(pod.get("status") or {}, "Ready") is True


def pod_terminating(pod: Mapping[str, Any]) -> bool:
    """Whether a pod as read from the API is being deleted (metadata.deletionTimestamp is set)."""
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))
