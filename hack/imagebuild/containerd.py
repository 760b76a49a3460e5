"""Puts the built images into a containerd, under the references pods name."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from .builder import ImageBuildError, build_all, run_step
from .table import Image

LABEL = "io.hakeeper.input-hash"


def ctr_binary() -> str:
    return os.environ.get("HAKEEPER_CTR") or shutil.which("ctr") or "ctr"


def present(address: str, namespace: str = "k8s.io") -> dict[str, str]:
    """{reference: input hash label ("" when unlabelled)} of the images in that containerd."""
    out = run_step("(every image)", "ctr images ls", [ctr_binary(), "--address", address, "-n", namespace,
                                          "images", "ls"])
    found: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        words = line.split()
        if not words:
            continue
        labels = dict(part.split("=", 1) for word in words[5:] for part in word.split(",") if "=" in part)
        found[words[0]] = labels.get(LABEL, "")
    return found


def load(address: str, names: Iterable[str] | None = None, namespace: str = "k8s.io",
         images: Iterable[Image] | None = None) -> dict[str, str]:
    """Builds what is missing (see build()), then imports each image into the containerd at the
    socket `address`, namespace `namespace` (the CRI's is k8s.io), unpacked for its default
    snapshotter, under its table reference, so pods with imagePullPolicy IfNotPresent or Never
    find it. An image already there with the same input hash (a label set on import) is skipped.

    Returns {name: reference}. Raises ImageBuildError (step "ctr import", or a build step).
    """
    results = build_all(names, images)
    hashes = {r.name: Path(r.tar).stem.rsplit("-", 1)[-1] for r in results}
    there = present(address, namespace)
    loaded: dict[str, str] = {}
    for r in results:
        if there.get(r.reference) != hashes[r.name]:
            ctr = [ctr_binary(), "--address", address, "-n", namespace]
            run_step(r.name, "ctr import", [*ctr, "images", "import", str(r.tar)])
            if r.reference not in present(address, namespace):
                raise ImageBuildError(r.name, "ctr import", f"{r.tar} did not create {r.reference}")
            run_step(r.name, "ctr import", [*ctr, "images", "label", r.reference, f"{LABEL}={hashes[r.name]}"])
        loaded[r.name] = r.reference
    return loaded


def run(address: str, reference: str, *argv: str, namespace: str = "k8s.io", options: Sequence[str] = (),
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`ctr run --rm [options] reference` of an imported image as its USER, in a network namespace
    of its own (no network), for checks: returns the completed process (stdout, stderr, returncode)."""
    name = f"imagebuild-check-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    cmd = [ctr_binary(), "--address", address, "-n", namespace, "run", "--rm", *options, reference, name, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
