"""Where the tools hack/build-tools.sh builds (kubectl, helm, etcd, the kube binaries) are."""

from __future__ import annotations

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tools_bin(*, build: bool = True) -> pathlib.Path:
    """The directory holding kubectl, helm, etcd and the Kubernetes binaries.

    HAKEEPER_TOOLS_BIN, when set, names it. Otherwise, with build=True, hack/build-tools.sh
    runs (nothing to do when cached; minutes when cold) and its last line of output is the
    directory; with build=False, nothing runs and the answer is the script's own cache
    directory ($HAKEEPER_TOOLS_CACHE, else $XDG_CACHE_HOME/hakeeper/tools, else
    ~/.cache/hakeeper/tools, then /bin), which may not exist.

    Raises subprocess.CalledProcessError when the build script fails.
    """
    if os.environ.get("HAKEEPER_TOOLS_BIN"):
        return pathlib.Path(os.environ["HAKEEPER_TOOLS_BIN"])
    if build:
        out = subprocess.run(["bash", str(ROOT / "hack/build-tools.sh")], check=True, capture_output=True, text=True)
        return pathlib.Path(out.stdout.strip().splitlines()[-1])
    cache = os.environ.get("HAKEEPER_TOOLS_CACHE") or pathlib.Path(
        os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "hakeeper/tools"
    return pathlib.Path(cache) / "bin"


def tool(name: str, *, build: bool = True) -> pathlib.Path:
    """The path of one tool (`helm`, `kubectl`, ...) in tools_bin(build=build).

    Raises AssertionError, saying how to build it, when the file is not there.
    """
    path = tools_bin(build=build) / name
    assert path.exists(), f"no {name} at {path}: run `make tools` (hack/build-tools.sh) first"
    return path
