"""Every Event reason hakeeper posts, by kind, with the Event type each is posted as.

Events are how the operator says what it did (a failover, a shed Deployment, a new config):
`kubectl describe`, `kubectl events --for` and alerting on Warning Events show them. The
reason is the machine-readable part (CamelCase, as the Kubernetes API conventions ask of
reasons), so each is defined once, here, and its string never changes. The type follows
the Event API: Warning for what a person may have to look at, Normal for the rest.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """The `type` of a Kubernetes Event."""

    NORMAL = "Normal"
    WARNING = "Warning"


class _Catalog(StrEnum):
    """A kind's Event reasons; each member knows the type it is posted as (Normal by default)."""

    type: EventType

    def __new__(cls, reason: str, type_: EventType = EventType.NORMAL) -> _Catalog:
        member = str.__new__(cls, reason)
        member._value_ = reason
        member.type = type_
        return member

    @classmethod
    def type_of(cls, reason: str) -> EventType:
        """The type of the Event with this reason: the member's, Normal for an unknown reason."""
        try:
            return cls(reason).type
        except ValueError:
            return EventType.NORMAL


class CommonEvent(_Catalog):
    """Reasons every kind's handlers may post."""

    INVALID_SPEC = "InvalidSpec", EventType.WARNING
    """The stored spec fails the schema; the message says where."""
    RECONCILE_FAILED = "ReconcileFailed", EventType.WARNING
    """The API server refused or failed a request; the loop retries."""


class PoolEvent(_Catalog):
    """Events on a LoadBalancerPool."""

    CONFIG_CHANGED = "ConfigChanged"
    """A new balancer config (its hash, and how many backends are ready)."""
    INVALID_WEIGHT = "InvalidWeight", EventType.WARNING
    """A backend pod's hakeeper.io/weight annotation is not a number from 0 to 256."""
    MULTIPLE_MASTERS = "MultipleMasters", EventType.WARNING
    """Engine lvs: more than one node holds the virtual IP (VRRP split brain)."""
    ENGINE_NOT_ALLOWED = "EngineNotAllowed", EventType.WARNING
    """Engine lvs refused in this namespace (chart value lvs.allowedNamespaces)."""
    IMAGE_NOT_ALLOWED = "ImageNotAllowed", EventType.WARNING
    """Engine lvs refused with this image (chart value lvs.allowedImages)."""
    VIRTUAL_ROUTER_ID_IN_USE = "VirtualRouterIDInUse", EventType.WARNING
    """Engine lvs refused: an older pool runs VRRP with its virtualRouterID on its interface and nodes."""
    TLS_SECRET_INVALID = "TLSSecretInvalid", EventType.WARNING
    """spec.tls names a Secret that is missing or holds no usable certificate and key."""
    REQUEST_CLASSES_REFUSED = "RequestClassesRefused", EventType.WARNING
    """The balancers now refuse these request classes (a DegradationPolicy's tier is shed)."""
    REQUEST_CLASSES_RESTORED = "RequestClassesRestored"
    """The balancers let these request classes through again."""
    RECORDS_CHANGED = "RecordsChanged"
    """Engine dns: the addresses the pool publishes changed (the message lists them)."""
    NO_HEALTHY_TARGETS = "NoHealthyTargets", EventType.WARNING
    """Engine dns: no target is healthy; every candidate is published (fail open)."""
    TARGET_POOL_MISSING = "TargetPoolMissing", EventType.WARNING
    """Engine dns: a pool named in dns.pools does not exist."""
    TARGET_POOL_UNADDRESSABLE = "TargetPoolUnaddressable", EventType.WARNING
    """Engine dns: a pool named in dns.pools has no address to publish."""
    DNS_ENDPOINT_CRD_MISSING = "DNSEndpointCRDMissing", EventType.WARNING
    """Engine dns: ExternalDNS's DNSEndpoint CRD is not installed."""


class DatabaseEvent(_Catalog):
    """Events on a ReplicatedDatabase: what its clustering loop saw and did.

    A change of phase is posted with the new phase as the reason (Initializing, Healthy,
    Degraded, Failed, Lost, Switching).
    """

    # phases
    INITIALIZING = "Initializing"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded", EventType.WARNING
    FAILED = "Failed", EventType.WARNING
    LOST = "Lost", EventType.WARNING
    SWITCHING = "Switching"
    # decisions (clustering.plan's notes)
    BOOTSTRAP = "Bootstrap"
    FAILOVER_STARTED = "FailoverStarted"
    FAILOVER_DISABLED = "FailoverDisabled"
    FAILOVER_SUPPRESSED = "FailoverSuppressed"
    """Within antiFlapWindow of the last failover."""
    NO_SAFE_CANDIDATE = "NoSafeCandidate", EventType.WARNING
    FAILOVER_REFUSED = "FailoverRefused", EventType.WARNING
    """Durability Lossless: no candidate is known to hold every acknowledged write."""
    FAILOVER_FORCED = "FailoverForced", EventType.WARNING
    """A person forced a failover Lossless refused (annotation hakeeper.io/force-failover-to)."""
    FORCE_IGNORED = "ForceFailoverIgnored", EventType.WARNING
    """The force-failover annotation was removed unused: no failover is refused, or it names no candidate."""
    POSSIBLE_LOSS = "FailoverMayLoseWrites", EventType.WARNING
    """Durability Available promotes although acknowledged writes may be missing on the candidate."""
    SWITCHOVER_STARTED = "SwitchoverStarted"
    SWITCHOVER_REFUSED = "SwitchoverRefused"
    FAILOVER_COMPLETED = "FailoverCompleted"
    SWITCHOVER_COMPLETED = "SwitchoverCompleted"
    ROLLOUT_RESTART = "RolloutRestart"
    """A member is evicted to restart with a new pod template (replicas first, the old primary last)."""
    ROLLOUT_COMPLETED = "RolloutCompleted"
    """Every member runs the StatefulSet's template."""
    ERRANT_TRANSACTIONS = "ErrantTransactions", EventType.WARNING
    """A member has transactions the primary lacks; it stays out until re-seeded."""
    RESEED_REQUIRED = "ReseedRequired", EventType.WARNING
    """A member must be rebuilt from another's data (errant, or the binary logs it needs are
    purged) and spec.autoReseed is false: the message gives the command that starts it."""
    RESEED_STARTED = "ReseedStarted"
    """A member is being rebuilt from a donor's data (MySQL: the clone plugin; MariaDB: mariabackup)."""
    RESEED_RESTART = "ReseedRestart"
    """A member's pod is evicted to start from the donor's data (its own kept when errant)."""
    RESEED_COMPLETED = "ReseedCompleted"
    RESEED_FAILED = "ReseedFailed", EventType.WARNING
    """A re-seed failed (the donor went away, the copy failed); it starts over with autoReseed."""
    RESEED_IGNORED = "ReseedIgnored", EventType.WARNING
    """The reseed annotation was removed unused: it names no member that needs one."""
    BACKUP_SUCCEEDED = "BackupSucceeded"
    """A backup run completed: the message gives its name, size, member and GTID position."""
    BACKUP_FAILED = "BackupFailed", EventType.WARNING
    """A backup run failed (the store unreachable, the replica gone ...): the message gives its
    log's last lines. Earlier backups are untouched; the next scheduled run tries again."""
    BACKUP_CONFIG_INVALID = "BackupConfigInvalid", EventType.WARNING
    RESTORE_STARTED = "RestoreStarted"
    RESTORE_COMPLETED = "RestoreCompleted"
    RESTORE_FAILED = "RestoreFailed", EventType.WARNING
    # actions (clustering.act)
    FENCED = "Fenced"
    FENCE_SKIPPED = "FenceSkipped"
    WRITABLE = "Writable"
    CLIENTS_DISCONNECTED = "ClientsDisconnected"
    """A former primary's client sessions killed once the -primary Service stopped routing to it."""
    STOP_IO_THREAD_SKIPPED = "StopIOThreadSkipped"
    DETACHED = "Detached"
    REPLICATION_CONFIGURED = "ReplicationConfigured"
    REPLICATION_STOPPED = "ReplicationStopped"
    USERS_ENSURED = "UsersEnsured"
    LEASE_EXPIRED = "LeaseExpired"
    CLONED = "Cloned"
    """A member's server copied a donor's data (a MySQL re-seed's copy)."""
    ACTION_FAILED = "ActionFailed"
    """An action of the plan failed; the next step re-plans."""


class PolicyEvent(_Catalog):
    """Events on a DegradationPolicy (those about a Deployment are posted on it too).

    A change of state is posted with the new state as the reason (Normal, Pending, Degraded,
    Recovering), as a Normal Event.
    """

    # states
    NORMAL = "Normal"
    PENDING = "Pending"
    DEGRADED = "Degraded"
    RECOVERING = "Recovering"
    # Deployments
    SHED = "Shed"
    RESTORED = "Restored"
    RELEASED = "Released", EventType.WARNING
    """Restored from being shed without scaling it: something else had scaled it up."""
    WOULD_SHED = "WouldShed"
    WOULD_RESTORE = "WouldRestore"
    SCALE_FAILED = "ScaleFailed", EventType.WARNING
    CONFLICT = "Conflict", EventType.WARNING
    # the policy itself
    METRICS_UNAVAILABLE = "MetricsUnavailable", EventType.WARNING
    EVALUATION_FAILED = "EvaluationFailed", EventType.WARNING
    NAMESPACE_REFUSED = "NamespaceRefused", EventType.WARNING
    """A namespace the policy lists is one it may not shed in (the message says why)."""
    # request classes refused at the balancers
    REQUEST_CLASSES_REFUSED = "RequestClassesRefused"
    REQUEST_CLASSES_RESTORED = "RequestClassesRestored"
    REQUEST_CLASS_UNKNOWN = "RequestClassUnknown", EventType.WARNING
    """A tier names a class its pool does not define (or a pool that does not exist): it refuses nothing."""
