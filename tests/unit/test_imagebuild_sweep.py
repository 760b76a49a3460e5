"""The image builder removes the exec roots of builds that were killed before they cleaned up
(hack/imagebuild/builder.py): one such directory left in /tmp failed the next run's check that a
build leaves nothing behind (tests/integration/test_images.py), and was never removed."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from imagebuild.builder import STALE_AFTER_SECONDS, sweep_stale_exec_roots


def _exec_root(pid: int | None, age: float) -> Path:
    root = Path(tempfile.mkdtemp(prefix="hk-dockerd-unit-", dir="/tmp"))
    (root / "netns").mkdir()
    if pid is not None:
        (root / "docker.pid").write_text(f"{pid}\n")
    then = time.time() - age
    os.utime(root, (then, then))
    return root


def test_only_old_exec_roots_without_a_live_dockerd_are_removed():
    old = STALE_AFTER_SECONDS + 60
    killed = _exec_root(None, old)  # the build died before dockerd wrote its pid, or removed it
    dead = _exec_root(2**22 + 12345, old)  # a pid no process has (above the default pid_max)
    alive = _exec_root(os.getpid(), old)  # a live process: another build's dockerd, running
    young = _exec_root(None, 1)  # a concurrent build whose dockerd has not written its pid yet
    try:
        removed = sweep_stale_exec_roots()
        assert killed in removed and dead in removed
        assert not killed.exists() and not dead.exists()
        assert alive.exists() and young.exists() and alive not in removed and young not in removed
    finally:
        for root in (killed, dead, alive, young):
            for child in sorted(root.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            if root.exists():
                root.rmdir()
