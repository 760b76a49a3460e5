"""The operator's settings: kopf's (how it keeps its own state) and hakeeper's own, typed,
from the environment the chart gives the operator pod."""

from __future__ import annotations

import dataclasses
import functools
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


@dataclasses.dataclass(frozen=True)
class Settings:
    """hakeeper's own settings."""

    agent_image: str | None = None
    """HAKEEPER_AGENT_IMAGE: the balancer agents' image when a pool names none (the chart sets
    it to the operator's own image)."""
    pod_name: str | None = None
    """POD_NAME (downward API): this replica's name, for its peering priority."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(agent_image=env.get("HAKEEPER_AGENT_IMAGE") or None, pod_name=env.get("POD_NAME") or None)


@functools.cache
def settings() -> Settings:
    """This process's settings, read once."""
    return Settings.from_env(os.environ)
