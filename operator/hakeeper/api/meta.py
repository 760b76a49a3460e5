"""Every label, annotation, finalizer and field manager hakeeper reads or writes: the names
that people, GitOps tools and the agents see on objects. Defined here and nowhere else.

The app.kubernetes.io labels are Kubernetes' recommended labels
(https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
"""

from __future__ import annotations

from hakeeper.api.common import GROUP

# -- the operator's own writes ---------------------------------------------------------------
FIELD_MANAGER = "hakeeper"
"""The one server-side-apply field manager of every write, so GitOps tools can be told to
ignore exactly these fields."""
FINALIZER = f"{GROUP}/finalizer"
PROGRESS_ANNOTATION_PREFIX = GROUP
"""kopf's progress and diff-base annotations (the structural status schema would prune them
from status)."""
DIFFBASE_ANNOTATION_KEY = "last-handled-configuration"

# -- recommended labels ------------------------------------------------------------------------
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "hakeeper"
BALANCER_COMPONENT = "balancer"
BACKUP_COMPONENT = "backup"
"""A database's backup CronJob, its Jobs and their pods (and the Service that names the replica
they copy)."""
BINLOG_COMPONENT = "binlog-archive"
"""A database's CronJob that copies the primary's binary logs between backups, its Jobs and pods."""

# -- Kubernetes' own -----------------------------------------------------------------------------
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""Set on an EndpointSlice by the EndpointSlice controller: the Service it belongs to."""

# -- LoadBalancerPool ----------------------------------------------------------------------------
POOL_LABEL = "hakeeper.io/pool"
"""On a pool's balancer pods and objects: the pool's name."""
WEIGHT_ANNOTATION = "hakeeper.io/weight"
"""On a backend pod: its weight (0..256), overriding the pool's."""
CONFIG_HASH_ANNOTATION = "hakeeper.io/config-hash"
"""On a balancer ConfigMap: the hash of its files, written by the operator; on a database's pod
template: the hash of its my.cnf (a new config is a new template, rolled out)."""
APPLIED_HASH_ANNOTATION = "hakeeper.io/applied-hash"
"""On a balancer pod: the config hash its agent has applied (ConfigApplied)."""
POD_SPEC_ANNOTATION = "hakeeper.io/pod-spec"
"""On the balancer pod template: the structure hash, so a structural change rolls the pods."""
RELOADS_ANNOTATION = "hakeeper.io/reloads"
"""On a HAProxy balancer pod: the hitless reloads its agent has done since it started."""
VRRP_STATE_ANNOTATION = "hakeeper.io/vrrp-state"
"""On a keepalived balancer pod: the VRRP state its agent saw (MASTER, BACKUP, FAULT)."""
EFFECTIVE_WEIGHTS_ANNOTATION = "hakeeper.io/effective-weights"
"""On a HAProxy balancer pod of a pool with weighting mode Latency: the weights its agent applies,
JSON [{backend, base, weight, percent, latencyMs}] (api/weighting.py EffectiveWeight)."""
IPVS_ANNOTATION = "hakeeper.io/ipvs"
"""On a keepalived balancer pod: whether the node's kernel has IPVS ("true"/"false")."""

# -- ReplicatedDatabase ----------------------------------------------------------------------------
DATABASE_LABEL = "hakeeper.io/database"
ROLE_LABEL = "hakeeper.io/role"
"""On a member pod: primary or replica; the -primary and -replicas Services select on it."""
SWITCHOVER_ANNOTATION = "hakeeper.io/switchover-to"
"""On a ReplicatedDatabase: the member a person asks to make primary."""
FORCE_FAILOVER_ANNOTATION = "hakeeper.io/force-failover-to"
"""On a ReplicatedDatabase whose failover durability Lossless refused: the member (name or
ordinal) a person accepts to promote anyway, knowing acknowledged writes may be lost. Used
once, then removed; removed unused when no failover is refused."""
RESEED_ANNOTATION = "hakeeper.io/reseed"
"""On a ReplicatedDatabase with spec.autoReseed false: the member (name or ordinal) a person asks
to rebuild from a healthy member's data (its own kept on its volume when errant). Removed once
the re-seed began, or when the member needs none."""

# -- DegradationPolicy -----------------------------------------------------------------------------
ORIGINAL_REPLICAS_ANNOTATION = "hakeeper.io/original-replicas"
SHED_BY_ANNOTATION = "hakeeper.io/shed-by"
SHED_TIER_ANNOTATION = "hakeeper.io/shed-tier"
SHED_SINCE_ANNOTATION = "hakeeper.io/shed-since"
SHED_ANNOTATIONS = (ORIGINAL_REPLICAS_ANNOTATION, SHED_BY_ANNOTATION, SHED_TIER_ANNOTATION, SHED_SINCE_ANNOTATION)
"""On a shed Deployment: what restoring it needs, and who shed it when."""
PROTECTED_LABEL = "hakeeper.io/protected"
"""On a Deployment or namespace: never shed."""
SHED_FROM_LABEL_PREFIX = "shed-from.hakeeper.io/"
"""With the policy's namespace after it and value "true", on a namespace: DegradationPolicies of
that namespace may shed in this one (degradationpolicy/tenancy.py)."""
KEDA_PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
"""KEDA's own, on a ScaledObject: KEDA scales its target to this count and stops autoscaling it
until the annotation goes (https://keda.sh/docs/latest/concepts/scaling-deployments/#pause-autoscaling).
A policy sets it to "0" on the ScaledObject of a Deployment it sheds."""
PAUSED_BY_ANNOTATION = "hakeeper.io/paused-by"
"""On a ScaledObject a policy paused: the policy (namespace/name), so it resumes only its own pauses."""
