"""Operator-wide kopf settings."""

from __future__ import annotations

import kopf

from ..api import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    # Progress and diff-base go in annotations: the CRDs' structural status schema
    # would prune anything kopf wrote under status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
