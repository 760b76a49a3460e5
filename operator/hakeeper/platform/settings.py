"""Operator-wide kopf settings."""

from __future__ import annotations

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
