"""kopf's per-event success lines are dropped, nothing else (platform/settings.py)."""

from __future__ import annotations

import logging

from hakeeper.platform.settings import WatchSuccessFilter


def _record(message: str, level: int = logging.INFO, local: bool = True) -> logging.LogRecord:
    record = logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
    record.k8s_skip = local
    return record


def test_only_watch_handler_successes_are_dropped() -> None:
    keep = WatchSuccessFilter().filter
    assert not keep(_record("Handler 'endpoint_slice_changed' succeeded."))
    # the control: the same line from a change handler (posted as an Event), a failure, a daemon
    assert keep(_record("Handler 'spec' succeeded.", local=False))
    assert keep(_record("Handler 'owned_changed' failed with an exception. Will retry.", level=logging.ERROR))
    assert keep(_record("Daemon 'pool' succeeded."))
