"""The local cluster as a context manager, for the e2e tier's session fixture and `make demo`."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator

from .cluster import LocalCluster


@contextlib.contextmanager
def cluster_session(bin_dir: pathlib.Path, *, nodes: int = 1) -> Iterator[LocalCluster]:
    state = pathlib.Path(tempfile.mkdtemp(prefix="hakeeper-cluster-"))
    cluster = LocalCluster(state, pathlib.Path(bin_dir), nodes=nodes)
    try:
        started = time.monotonic()
        cluster.start()
        cluster.startup_seconds = time.monotonic() - started
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
