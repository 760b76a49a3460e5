"""The operator's settings: kopf's (how it keeps its own state) and hakeeper's own, typed,
from the environment the chart gives the operator pod."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping

import kopf

from hakeeper.api.meta import DIFFBASE_ANNOTATION_KEY, FINALIZER, PROGRESS_ANNOTATION_PREFIX


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    # Progress and diff-base go in annotations: the CRDs' structural status schema
    # would prune anything kopf wrote under status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PROGRESS_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PROGRESS_ANNOTATION_PREFIX, key=DIFFBASE_ANNOTATION_KEY)
    settings.persistence.finalizer = FINALIZER
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # A standby takes over when the active replica's peering record expires: kopf renews it
    # 5 to 10 s before it would (kopf's peering.keepalive), so a crashed operator is replaced
    # within this many seconds, and while it is away a database's primary keeps its writes
    # (durability Lossless: clustering/lease.py).
    settings.peering.lifetime = Settings.from_env(os.environ).peering_lifetime
    quiet = logging.getLogger("kopf.objects")
    if not any(isinstance(f, WatchSuccessFilter) for f in quiet.filters):
        quiet.addFilter(WatchSuccessFilter())


class WatchSuccessFilter(logging.Filter):
    """Drops kopf's "Handler '…' succeeded." for the watch-event handlers (kopf.on.event, logged
    through its local, never-posted logger): one line per watch event of every watched kind, 28,000
    in a few minutes of bench/scale at 1,000 pools, where formatting and writing them cost 3 % of the
    operator's CPU under churn. Their failures, and every other handler's lines, are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not getattr(record, "k8s_skip", False):
            return True
        message = record.getMessage()
        return not (message.startswith("Handler '") and message.endswith("' succeeded."))


PEERING_LIFETIME_SECONDS = 12
"""kopf's default is 60: a minute without an operator after a crash."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """hakeeper's own settings."""

    agent_image: str | None = None
    """HAKEEPER_AGENT_IMAGE: the balancer agents' image when a pool names none (the chart sets
    it to the operator's own image)."""
    pod_name: str | None = None
    """POD_NAME (downward API): this replica's name, for its peering priority."""
    peering_lifetime: int = PEERING_LIFETIME_SECONDS
    """HAKEEPER_PEERING_LIFETIME: seconds a replica's peering record stays valid unrenewed, so
    the longest a standby waits to take over from a crashed active replica (at least 11: kopf
    renews it 5 to 10 s before it expires)."""

    trusted_policy_namespaces: frozenset[str] = frozenset()
    """HAKEEPER_TRUSTED_POLICY_NAMESPACES (comma-separated; "*" for all): namespaces whose
    DegradationPolicies may shed in any namespace they list, without its opt-in label
    (degradationpolicy/tenancy.py)."""

    lvs_allowed_namespaces: frozenset[str] = frozenset()
    """HAKEEPER_LVS_ALLOWED_NAMESPACES (comma-separated shell patterns): where a pool of engine
    lvs may run its privileged keepalived pods (loadbalancerpool/lvs/admission.py)."""
    lvs_allowed_images: frozenset[str] = frozenset()
    """HAKEEPER_LVS_ALLOWED_IMAGES (comma-separated shell patterns): images such a pool may run,
    besides the keepalived image hakeeper ships."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """ValueError for a HAKEEPER_PEERING_LIFETIME that is not an integer of at least 11."""
        lifetime = int(env.get("HAKEEPER_PEERING_LIFETIME") or PEERING_LIFETIME_SECONDS)
        if lifetime < 11:
            raise ValueError(f"HAKEEPER_PEERING_LIFETIME must be at least 11 (seconds), not {lifetime}")
        return cls(agent_image=env.get("HAKEEPER_AGENT_IMAGE") or None, pod_name=env.get("POD_NAME") or None,
                   peering_lifetime=lifetime,
                   trusted_policy_namespaces=_names(env.get("HAKEEPER_TRUSTED_POLICY_NAMESPACES")),
                   lvs_allowed_namespaces=_names(env.get("HAKEEPER_LVS_ALLOWED_NAMESPACES")),
                   lvs_allowed_images=_names(env.get("HAKEEPER_LVS_ALLOWED_IMAGES")))


def _names(text: str | None) -> frozenset[str]:
    """A comma-separated list as a set, blanks dropped."""
    return frozenset(n.strip() for n in (text or "").split(",") if n.strip())


@functools.cache
def settings() -> Settings:
    """This process's settings, read once."""
    return Settings.from_env(os.environ)
