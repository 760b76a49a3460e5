"""The local cluster's machine lock: a second cluster is refused while one runs; a killed one's
lock is let go by the kernel and names the state directory whose leftovers the next one stops."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from localcluster.cluster import MachineLock
from localcluster.controlplane import StartupError

HACK = pathlib.Path(__file__).resolve().parents[2] / "hack"

HOLD = textwrap.dedent("""
    import pathlib, sys, time
    from localcluster.cluster import MachineLock
    MachineLock(pathlib.Path(sys.argv[1])).acquire(pathlib.Path(sys.argv[2]))
    print("held", flush=True)
    time.sleep(600)
""")


def _holder(lock, state):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(state)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(HACK)})
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_cluster_is_refused_while_one_holds_the_lock(tmp_path):
    holder = _holder(tmp_path / "lock", tmp_path / "first")
    try:
        with pytest.raises(StartupError, match=f"another local cluster runs.*{tmp_path / 'first'}"):
            MachineLock(tmp_path / "lock").acquire(tmp_path / "second")
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_cluster_names_its_state_to_the_next(tmp_path):
    holder = _holder(tmp_path / "lock", tmp_path / "killed")
    holder.kill()
    holder.wait()
    lock = MachineLock(tmp_path / "lock")
    assert lock.acquire(tmp_path / "next") == tmp_path / "killed"
    lock.release()
    # a cluster that stopped in order leaves nothing to clean
    assert MachineLock(tmp_path / "lock").acquire(tmp_path / "third") is None
