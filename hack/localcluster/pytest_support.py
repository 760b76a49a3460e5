"""The local cluster as a context manager, for the e2e tier's session fixture and `make demo`."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from .cluster import LocalCluster


@contextlib.contextmanager
def cluster_session(bin_dir: pathlib.Path) -> Iterator[LocalCluster]:
    """Starts a one-node cluster in a fresh state directory; stops it (and checks that nothing was
    left behind, raising TeardownError otherwise) when the block ends."""
    state = pathlib.Path(tempfile.mkdtemp(prefix="hakeeper-cluster-"))
    cluster = LocalCluster(state, pathlib.Path(bin_dir))
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(state, ignore_errors=True)
