"""DegradationPolicy: shed low-priority Deployments while alerting metrics fire."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from hakeeper.api.common import (
    BaseStatus,
    Duration,
    LabelSelector,
    Model,
    ObjectName,
    PositiveDuration,
    SecretKeyRef,
    StatusModel,
    cel,
)
from hakeeper.api.request_classes import ClassName


class Prometheus(Model):
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring.svc:9090."""
    timeout: PositiveDuration = "5s"
    """How long one query may take (longer than 0s, at most interval); a slower answer counts as
    metrics unavailable."""
    bearer_token_secret_ref: SecretKeyRef | None = None
    """A Secret key holding a bearer token sent as `Authorization: Bearer <token>`."""
    ca_secret_ref: SecretKeyRef | None = None
    """PEM CA bundle that signed Prometheus' serving certificate."""
    insecure_skip_verify: bool = False

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!(has(self.caSecretRef) && self.insecureSkipVerify)",
                    "caSecretRef and insecureSkipVerify exclude each other"),
            ]
        }
    )


class Trigger(Model):
    """A PromQL expression compared with a threshold; it fires after holding for `for`."""

    name: ObjectName
    query: str = Field(min_length=1, max_length=4096)
    """PromQL returning one sample (e.g. wrapped in max() or sum()); an empty result or NaN is no data."""
    operator: Literal[">", ">=", "<", "<="] = ">"
    threshold: float = Field(allow_inf_nan=False)
    """A finite number. NaN and infinities cannot be written: JSON has none, and kubectl refuses
    YAML's .nan and .inf before sending ("json: unsupported value: NaN"); `hakeeper render`
    refuses them with the same words."""
    for_: Duration = Field(default="1m", alias="for")
    """How long the comparison must hold before the trigger fires. 0s is allowed and means: fire
    at the first evaluation that finds the threshold crossed, as a Prometheus alerting rule
    without `for` does (the threshold, recoverThreshold and the staged shedding still apply)."""
    recover_threshold: float | None = Field(default=None, allow_inf_nan=False)
    """The value must cross back past this (not just the threshold) to count as recovered;
    between the two nothing changes. A finite number, as threshold."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!has(self.recoverThreshold) || (self.operator in ['>', '>='] ? "
                    "self.recoverThreshold <= self.threshold : self.recoverThreshold >= self.threshold)",
                    "recoverThreshold must lie on the recovered side of threshold "
                    "(at or below it for > and >=, at or above it for < and <=)"),
            ]
        }
    )


class PoolRequestClasses(Model):
    """Request classes of a LoadBalancerPool (in the policy's namespace) that the balancers refuse
    while the tier is shed (answered with the pool's requestRefusal: 503 or 429, Retry-After)."""

    pool: ObjectName
    classes: list[ClassName] = Field(min_length=1, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Names from the pool's spec.requestClasses; a name the pool lacks is reported, not fatal."""


class Tier(Model):
    """Deployments shed together, and request classes refused together; tiers with lower priority
    are shed first.

    A Deployment that several tiers select belongs to the one with the lowest priority.
    """

    name: ObjectName
    priority: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    selector: LabelSelector | None = None
    """Deployments with these labels."""
    max_pod_priority: int | None = Field(default=None, ge=-2_147_483_648, le=1_000_000_000)
    """Deployments whose pods' PriorityClass value is at most this (reusing the cluster's priorities).
    Pods without a priorityClassName get the globalDefault class's value, or 0."""
    request_classes: list[PoolRequestClasses] = Field(default_factory=list, max_length=16)
    """Pools' request classes refused while the tier is shed (a tier may have only these)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.selector) || has(self.maxPodPriority) || size(self.requestClasses) > 0",
                    "a tier selects Deployments by selector, maxPodPriority, or both, or names requestClasses"),
                cel("self.requestClasses.all(a, self.requestClasses.exists_one(b, b.pool == a.pool))",
                    "a tier names each pool once in requestClasses", ".requestClasses"),
            ]
        }
    )


class Restore(Model):
    cooldown: Duration = "5m"
    """Every trigger must stay recovered this long before anything is restored. 0s is allowed
    and means: restore at the first evaluation that finds every trigger recovered (each
    trigger's recoverThreshold still keeps a value near the threshold from counting)."""
    interval: PositiveDuration = "1m"
    """Restore one tier per interval (longer than 0s)."""
    order: Literal["HighestPriorityFirst", "LowestPriorityFirst"] = "HighestPriorityFirst"


class DegradationPolicySpec(Model):
    prometheus: Prometheus
    interval: PositiveDuration = "15s"
    """How often the triggers are evaluated (at least 1s)."""
    triggers: list[Trigger] = Field(min_length=1, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    tiers: list[Tier] = Field(min_length=1, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    namespaces: list[ObjectName] = Field(default_factory=list, max_length=64,
                                         json_schema_extra={"x-kubernetes-list-type": "set"})
    """Namespaces whose Deployments may be shed (default: the policy's own). Another namespace
    must opt in with the label shed-from.hakeeper.io/<policy namespace>=true, unless the cluster
    admin trusts the policy's namespace (chart value degradationPolicy.trustedNamespaces); a
    refused one is listed in status.refusedNamespaces and nothing there is shed."""
    mode: Literal["staged", "all"] = "staged"
    """staged: one more tier per interval while a trigger still fires; all: every tier at once."""
    restore: Restore = Field(default_factory=Restore)
    on_metrics_unavailable: Literal["Hold", "Restore"] = "Hold"
    """Prometheus down or the query failing: Hold keeps things as they are, Restore counts the
    trigger as recovered. Neither ever sheds."""
    on_no_data: Literal["Hold", "Restore"] = "Hold"
    """An empty result, NaN or a stale series is no data, never zero: Hold or Restore as above."""
    protect: list[LabelSelector] = Field(default_factory=list, max_length=16)
    """Deployments matching any of these are never touched. Deployments labelled
    hakeeper.io/protected=true, those hakeeper itself runs, and those whose pods run at a
    system priority (2000000000 and up) are never touched either."""
    dry_run: bool = False
    """Report what would be shed or restored (status and Events) without scaling anything."""
    max_shed_fraction: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    """Never shed more than this fraction (rounded down) of the Deployments running in the
    policy's namespaces, counting those it has shed."""
    max_targets_per_step: int = Field(default=10, ge=1, le=1000)
    """At most this many Deployments are scaled per evaluation, shedding or restoring."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.tiers.all(a, self.tiers.exists_one(b, b.priority == a.priority))",
                    "each tier needs a priority of its own", ".tiers"),
                cel("duration(self.interval) >= duration('1s')", "interval must be at least 1s"),
                cel("duration(self.prometheus.timeout) <= duration(self.interval)",
                    "prometheus.timeout must not be longer than interval"),
            ]
        }
    )


TriggerCondition = Literal["Breaching", "Between", "Recovered", "NoData", "Unavailable"]


class TriggerStatus(StatusModel):
    """One trigger as last evaluated."""

    name: str
    value: float | None = None
    """The query's last value."""
    condition: TriggerCondition | None = None
    """Breaching the threshold, Between the two thresholds, Recovered, NoData or Unavailable."""
    firing: bool = False
    """Breached for `for` and not yet recovered."""
    since: str | None = None
    """When the current condition began."""
    message: str | None = None


class ShedTarget(StatusModel):
    """A Deployment the policy shed (scaled to zero)."""

    namespace: str
    name: str
    tier: str
    original_replicas: int
    """Its replicas before it was shed: what a restore scales it back to."""
    since: str
    """When it was shed (RFC 3339)."""
    dry_run: bool = False
    """Only reported: dryRun is on and nothing was scaled."""
    hpa: str | None = None
    """The HorizontalPodAutoscaler of this Deployment; it pauses while replicas are 0."""
    conflict: str | None = None
    """Something else scaled the Deployment back up; the policy leaves it alone."""


class RefusedNamespace(StatusModel):
    """A namespace in spec.namespaces the policy may not shed in."""

    namespace: str
    reason: str
    """Why, and what lets it: the opt-in label, or the cluster admin's trust."""


class RefusedRequestClasses(StatusModel):
    """Request classes of one pool the balancers refuse because a tier is shed."""

    pool: str
    classes: list[str] = Field(default_factory=list)
    """The classes the tier names: the pool refuses those it defines."""
    tier: str
    since: str
    """When the tier's classes were first refused (RFC 3339)."""
    unknown: list[str] = Field(default_factory=list)
    """Classes the tier names that the pool does not define (or all of them: the pool is missing)."""
    dry_run: bool = False
    """Only reported: dryRun is on and the pool refuses nothing."""


class DegradationPolicyStatus(BaseStatus):
    """Conditions: Ready (the policy evaluates its triggers), MetricsAvailable, Degraded, Conflict,
    NamespacesAllowed."""

    state: Literal["Normal", "Pending", "Degraded", "Recovering"] | None = None
    """Normal; Pending (a trigger breaches, its `for` has not elapsed); Degraded (Deployments are
    shed); Recovering (every trigger recovered: restoring one tier per restore.interval)."""
    message: str | None = None
    """What the policy does or waits for, in one line."""
    shed_tiers: int = 0
    """Tiers with a Deployment shed."""
    shed_count: int = 0
    """Deployments shed (scaled to zero, not dry run)."""
    triggers: list[TriggerStatus] = Field(default_factory=list)
    shed: list[ShedTarget] = Field(default_factory=list)
    """Every Deployment the policy has shed (or, dryRun, would have), lowest tier priority first."""
    refused_namespaces: list[RefusedNamespace] = Field(default_factory=list)
    """Namespaces of spec.namespaces the policy may not shed in, and why."""
    refused_request_classes: list[RefusedRequestClasses] = Field(default_factory=list)
    """Pools' request classes refused while their tier is shed (the pools read this list)."""
    last_evaluated: str | None = None
    """When the triggers were last evaluated (RFC 3339): written with any other change of the status,
    else at least once a minute (a restarted operator counts the time since as unobserved)."""
    last_shed_time: str | None = None
    last_restore_time: str | None = None
    last_transition_time: str | None = None
    """When state last changed."""
