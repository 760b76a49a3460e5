"""Which local program stands in for a container image (pure).

There is no container runtime here, so an image is known by the last element of its
repository path ("ghcr.io/x/haproxy:3.0" is "haproxy") and mapped to a program installed on
this machine. The container's command and args are kept, with the image's binary names
mapped to local paths; an image with no mapping cannot run, and its pod says so
(Waiting, ImageNotRunnableLocally) instead of pretending.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

HACK_DIR = pathlib.Path(__file__).resolve().parents[1]
IMAGES_DIR = pathlib.Path(__file__).resolve().parent / "images"


@dataclasses.dataclass(frozen=True)
class Runtime:
    entrypoint: tuple[str, ...]
    """The image's ENTRYPOINT: kept when the container gives args but no command."""
    cmd: tuple[str, ...] = ()
    """The image's CMD: used when the container gives neither command nor args."""
    binaries: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """A command's first word as the image knows it → the local program."""
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _python_module(module: str) -> tuple[str, ...]:
    return (sys.executable, "-m", module)


RUNTIMES: dict[str, Runtime] = {
    # a test workload: an HTTP server naming itself (see httpbackend.py)
    "test-http-backend": Runtime(
        entrypoint=_python_module("localcluster.httpbackend"),
        cmd=("--address", "$(POD_IP)", "--port", "$(PORT)", "--name", "$(POD_NAME)"),
        env={"PYTHONPATH": str(HACK_DIR)},
    ),
    # traefik/whoami, the quickstart's backend on a real cluster: the same server stands in
    # (it takes whoami's --port flag and answers /health)
    "whoami": Runtime(entrypoint=_python_module("localcluster.httpbackend"), cmd=("--port", "80"),
                      env={"PYTHONPATH": str(HACK_DIR)}),
    "haproxy": Runtime(entrypoint=("/usr/sbin/haproxy",), cmd=("-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"),
                       binaries={"haproxy": ("/usr/sbin/haproxy",)}),
    # Debian's MariaDB; the image's PATH puts wrappers first that add --user=root, which
    # mariadbd and mariadb-install-db want when run as root (pods here run as root)
    "mariadb": Runtime(entrypoint=("mariadbd",), binaries={"mariadbd": (str(IMAGES_DIR / "mariadb/mariadbd"),)},
                       env={"PATH": f"{IMAGES_DIR / 'mariadb'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}),
    # the operator's own image: the operator, and the balancer agent sidecar
    "hakeeper": Runtime(entrypoint=_python_module("hakeeper"), cmd=("run", "--all-namespaces"),
                        binaries={"hakeeper": _python_module("hakeeper")}),
}


def image_name(image: str) -> str:
    """"registry:5000/a/b:tag@sha256:..." → "b"."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def command_for(container: Mapping[str, Any]) -> tuple[list[str], dict[str, str]] | None:
    """(argv with $(VAR) references still in it, extra env), or None when the image is unknown."""
    runtime = RUNTIMES.get(image_name(container.get("image", "")))
    if runtime is None:
        return None
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if command:
        argv = [*runtime.binaries.get(command[0], (command[0],)), *command[1:], *args]
    else:
        argv = [*runtime.entrypoint, *(args or runtime.cmd)]
    return argv, dict(runtime.env)


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown ones stay."""
    out = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2:end]
            out.append(env.get(name, value[i:end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)
