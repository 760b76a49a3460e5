"""DegradationPolicy: shed low-priority Deployments while alerting metrics fire."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from .common import BaseStatus, Duration, LabelSelector, Model, ObjectName, SecretKeyRef, StatusModel, cel

ORIGINAL_REPLICAS_ANNOTATION = "hakeeper.io/original-replicas"
FIELD_MANAGER = "hakeeper"


class Prometheus(Model):
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    timeout: Duration = "5s"
    bearer_token_secret_ref: SecretKeyRef | None = None
    ca_secret_ref: SecretKeyRef | None = None
    """PEM CA bundle that signed Prometheus' serving certificate."""
    insecure_skip_verify: bool = False


class Trigger(Model):
    """A PromQL expression compared with a threshold; it fires after holding for `for`."""

    name: ObjectName
    query: str = Field(min_length=1, max_length=4096)
    """PromQL returning one sample (e.g. wrapped in max() or sum()); an empty result is no data."""
    operator: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    for_: Duration = Field(default="1m", alias="for")
    """How long the comparison must hold before the trigger fires."""
    recover_threshold: float | None = None
    """The value must cross back past this (not just the threshold) to count as recovered."""

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


class Tier(Model):
    """Deployments shed together; tiers with lower priority are shed first."""

    name: ObjectName
    priority: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    selector: LabelSelector | None = None
    """Deployments with these labels."""
    max_pod_priority: int | None = Field(default=None, ge=-2_147_483_648, le=1_000_000_000)
    """Deployments whose pods' PriorityClass value is at most this (reusing the cluster's priorities)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.selector) || has(self.maxPodPriority)",
                    "a tier selects Deployments by selector, maxPodPriority, or both")
            ]
        }
    )


class Restore(Model):
    cooldown: Duration = "5m"
    """Every trigger must stay recovered this long before anything is restored."""
    interval: Duration = "1m"
    """Restore one tier per interval."""
    order: Literal["HighestPriorityFirst", "LowestPriorityFirst"] = "HighestPriorityFirst"


class DegradationPolicySpec(Model):
    prometheus: Prometheus
    interval: Duration = "15s"
    """How often the triggers are evaluated."""
    triggers: list[Trigger] = Field(min_length=1, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    tiers: list[Tier] = Field(min_length=1, max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    namespaces: list[ObjectName] = Field(default_factory=list, max_length=64)
    """Namespaces whose Deployments may be shed (default: the policy's own)."""
    mode: Literal["staged", "all"] = "staged"
    """staged: one more tier per interval while a trigger still fires; all: every tier at once."""
    restore: Restore = Field(default_factory=Restore)
    on_metrics_unavailable: Literal["Hold", "Restore"] = "Hold"
    """Prometheus down or erroring: Hold keeps things as they are (never sheds)."""
    on_no_data: Literal["Hold", "Restore"] = "Hold"
    """An empty or stale result is no data, never zero."""
    protect: list[LabelSelector] = Field(default_factory=list, max_length=16)
    """Deployments matching any of these are never touched."""
    dry_run: bool = False
    """Report what would be shed without scaling anything."""
    max_shed_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """Never shed more than this fraction of the selectable Deployments."""
    max_targets_per_step: int = Field(default=10, ge=1, le=1000)

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.tiers.all(a, self.tiers.exists_one(b, b.priority == a.priority))",
                    "each tier needs a priority of its own", ".tiers"),
                cel("duration(self.interval) >= duration('1s')", "interval must be at least 1s"),
            ]
        }
    )


class TriggerStatus(StatusModel):
    name: str
    value: float | None = None
    firing: bool = False
    since: str | None = None
    """When the comparison started to hold (or to fail, while recovering)."""
    message: str | None = None


class ShedTarget(StatusModel):
    namespace: str
    name: str
    tier: str
    original_replicas: int
    since: str


class DegradationPolicyStatus(BaseStatus):
    state: Literal["Normal", "Pending", "Degraded", "Recovering"] | None = None
    shed_tiers: int = 0
    shed_count: int = 0
    triggers: list[TriggerStatus] = Field(default_factory=list)
    shed: list[ShedTarget] = Field(default_factory=list)
    last_transition_time: str | None = None
