"""Builds the images of table.py into ~/.cache/hakeeper/images/<name>-<hash>.tar (docker save).

An image's hash covers everything that decides its content: its recipe directory, the context
files its Dockerfile copies, its build arguments, its base (the mmdebstrap recipe, or the hash
of the image it is built on) and, for a Go binary, the wrapper module and the Go release. A tar
with that hash is the build: nothing runs. Otherwise a private dockerd is started once (lazily)
with its own data root under ~/.cache/hakeeper/docker and no bridge or iptables rules, and
stopped when the build ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .table import BASES, IMAGES, Base, Image, by_name

REPO = Path(__file__).resolve().parents[2]
# bump to rebuild everything (a change of how images are made, not of what they hold)
SCHEME = "1"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# like Docker Hub's debian:*-slim: no manuals, docs (but copyrights) or translations
DPKG_EXCLUDES = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
                 "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
                 "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/groff/*",
                 "path-exclude=/usr/share/lintian/*")
# the mirrors here serve a copy whose Release files may be past their Valid-Until date
APT_OPTIONS = ('Acquire::Check-Valid-Until "false"',)
# as Docker Hub's debian images (/etc/apt/apt.conf.d/docker-clean): no package caches or
# downloaded .debs left in a layer; written after mmdebstrap's own apt runs (a hook). Without
# its Dir::Cache::*pkgcache "" lines: mmdebstrap's final clean-up reads them and would then
# leave the caches in the base.
APT_CLEAN = """DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
"""
# CAs this machine added to its trust (a TLS-inspecting proxy's, say): the bases made here trust
# them too, so RUN pip reaches PyPI the way the host does. Images on Docker Hub's bases lack them.
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
EXCLUDED = ("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".mypy_cache")


def cache_root() -> Path:
    """~/.cache/hakeeper (XDG_CACHE_HOME respected)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hakeeper"


def images_dir() -> Path:
    """Where the image tars live: $HAKEEPER_IMAGES_CACHE or ~/.cache/hakeeper/images."""
    return Path(os.environ.get("HAKEEPER_IMAGES_CACHE") or cache_root() / "images")


class ImageBuildError(RuntimeError):
    """A step of making an image failed.

    Attributes: image (the table's name, or "base-<suite>"), step (one of "mmdebstrap base",
    "go build", "dockerd start", "docker import", "docker build", "docker save", "docker load",
    "ctr images ls", "ctr import"), log (the last lines of that step's output).
    """

    def __init__(self, image: str, step: str, detail: str, log: str = "") -> None:
        self.image, self.step, self.log = image, step, log
        message = f"image {image}: {step} failed: {detail}"
        if log:
            message += "\n--- last lines of its log ---\n" + log
        super().__init__(message)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_step(image: str, step: str, argv: list[str], log: Path | None = None,
             env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 3600) -> str:
    """Runs argv; its output goes to `log` (when given) and comes back; failure raises ImageBuildError."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ImageBuildError(image, step, f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        raise ImageBuildError(image, step, f"timed out after {timeout:.0f} s", tail(out)) from None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(argv)}\n{proc.stdout}")
    if proc.returncode != 0:
        where = f" (whole log: {log})" if log is not None else ""
        raise ImageBuildError(image, step, f"exit status {proc.returncode}{where}", tail(proc.stdout))
    return proc.stdout


# --- hashing -------------------------------------------------------------------------------

def _excluded(rel: str) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in rel.split("/") for pattern in EXCLUDED)


def _files(root: Path, patterns: Iterable[str] = ("**",)) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        if pattern.endswith("/**"):
            candidates = (root / pattern[:-3]).rglob("*")
        elif pattern == "**":
            candidates = root.rglob("*")
        else:
            candidates = root.glob(pattern)
        for path in candidates:
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not _excluded(rel):
                found.add(path)
    return sorted(found)


def _hash_files(h: hashlib._Hash, root: Path, files: Iterable[Path]) -> None:
    for path in files:
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(oct(path.stat().st_mode & 0o111).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def local_cas() -> list[Path]:
    return sorted(LOCAL_CA_DIR.glob("*.crt")) if LOCAL_CA_DIR.is_dir() else []


def base_hash(base: Base) -> str:
    """The hash of a base's mmdebstrap recipe (suite, sources, options, the host's local CAs)."""
    spec = {"scheme": SCHEME, "suite": base.suite, "sources": base.sources, "dpkg": DPKG_EXCLUDES,
            "apt": APT_OPTIONS, "args": mmdebstrap_args(base),
            "cas": [hashlib.sha256(p.read_bytes()).hexdigest() for p in local_cas()]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def go_version() -> str:
    try:
        return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no-go"


def binary_version(name: str, module: str | None = None) -> str:
    """The version of `module` (default github.com/<name>/<name>) required by hack/<name>/go.mod
    (e.g. v1.15.0)."""
    module = module or f"github.com/{name}/{name}"
    for line in (REPO / "hack" / name / "go.mod").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == module and words[1].startswith("v"):
            return words[1]
        if len(words) >= 3 and words[0] == "require" and words[1] == module:
            return words[2]
    raise ImageBuildError(name, "go build", f"hack/{name}/go.mod requires no {module}")


def image_hash(image: Image, table: dict[str, Image], _seen: tuple[str, ...] = ()) -> str:
    """16 hex digits over everything that decides the image's content (see the module doc)."""
    if image.name in _seen:
        raise ValueError(f"image {image.name}: its base chain loops: {' -> '.join(_seen)}")
    h = hashlib.sha256()
    h.update(f"scheme {SCHEME}\nname {image.name}\nreference {image.reference}\n".encode())
    h.update(f"dockerfile {image.dockerfile}\n".encode())
    h.update(json.dumps(sorted(image.build_args.items())).encode())
    recipe = REPO / image.recipe
    # a binary left in the recipe directory (the Dockerfile's manual steps) is not an input
    _hash_files(h, recipe, [p for p in _files(recipe) if p.name != image.binary])
    if image.context is not None:
        h.update(b"context\0")
        context = REPO / image.context
        _hash_files(h, context, _files(context, image.inputs))
    if image.base.startswith("image:"):
        parent = table[image.base[len("image:"):]]
        h.update(f"base image {image_hash(parent, table, (*_seen, image.name))}\n".encode())
    else:
        h.update(f"base {image.base} {base_hash(BASES[image.base])}\n".encode())
    if image.binary:
        module = REPO / "hack" / image.binary
        h.update(f"binary {image.binary} {binary_version(image.binary, image.go_main)} {go_version()}\n".encode())
        _hash_files(h, module, _files(module, ("go.mod", "go.sum")))
    return h.hexdigest()[:16]


# --- the bases ---------------------------------------------------------------------------------

def mmdebstrap_args(base: Base) -> list[str]:
    args = ["--variant=minbase", "--include=ca-certificates", "--format=tar",
            # merged /usr from a hook, not by the usrmerge package (which pulls in perl)
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]
    args += [f"--aptopt={option}" for option in APT_OPTIONS]
    args += [f"--dpkgopt={option}" for option in DPKG_EXCLUDES]
    args.append(f"--customize-hook=printf '%s' {shlex.quote(APT_CLEAN)} > \"$1\"/etc/apt/apt.conf.d/docker-clean")
    if local_cas():
        args.append(f'--customize-hook=cp {LOCAL_CA_DIR}/*.crt "$1"/usr/local/share/ca-certificates/'
                    ' && chroot "$1" update-ca-certificates >/dev/null')
    return args


def base_tar(base: Base) -> Path:
    return images_dir() / f"base-{base.suite}-{base_hash(base)}.tar"


def base_tag(base: Base) -> str:
    return f"{base.tag_repository}:{base.suite}-{base_hash(base)}"


def make_base(base: Base, for_image: str = "-") -> Path:
    """The base's root filesystem tar, made by mmdebstrap when missing (~1 min); errors name
    `for_image`, the image that needs it."""
    out = base_tar(base)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    name = f"{for_image} (base {base.suite})"
    print(f"imagebuild: making the {base.suite} base with mmdebstrap (~1 min)", file=sys.stderr)
    run_step(name, "mmdebstrap base", ["mmdebstrap", *mmdebstrap_args(base), base.suite, str(tmp), *base.sources],
             log=logs_dir() / f"base-{base.suite}.log", timeout=1800)
    os.replace(tmp, out)
    _prune(out.parent, f"base-{base.suite}-", keep=out)
    return out


def logs_dir() -> Path:
    return images_dir() / "logs"


def _prune(directory: Path, prefix: str, keep: Path) -> None:
    """Drops older builds of the same image (other hashes) so the cache does not grow."""
    for path in directory.glob(f"{prefix}*.tar"):
        rest = path.name[len(prefix):-len(".tar")]
        if path != keep and len(rest) == 16 and all(c in "0123456789abcdef" for c in rest):
            path.unlink(missing_ok=True)


# --- the private dockerd ---------------------------------------------------------------------------

class Docker:
    """A dockerd of our own, started on first use: data root ~/.cache/hakeeper/docker, its own
    exec root, pid file and socket, no bridge, no iptables rules. `close()` stops it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.exec_root: Path | None = None
        self.env: dict[str, str] = {}

    def docker(self) -> str:
        return os.environ.get("HAKEEPER_DOCKER") or ("/usr/bin/docker" if Path("/usr/bin/docker").exists()
                                                      else shutil.which("docker") or "docker")

    def start(self, image: str = "-") -> None:
        """Starts dockerd unless running; `image` names the image it is started for, in errors."""
        if self.proc is not None:
            return
        dockerd = os.environ.get("HAKEEPER_DOCKERD") or shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not Path(dockerd).exists():
            raise ImageBuildError(image, "dockerd start", "dockerd is not installed (Debian: docker.io)")
        data_root = cache_root() / "docker"
        data_root.mkdir(parents=True, exist_ok=True)
        sweep_stale_exec_roots()
        # short: the socket path must fit in sun_path
        self.exec_root = Path(tempfile.mkdtemp(prefix="hk-dockerd-", dir="/tmp"))
        sock = self.exec_root / "docker.sock"
        log_path = logs_dir() / "dockerd.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [dockerd, "--data-root", str(data_root), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.exec_root / "docker.pid"), "-H", f"unix://{sock}",
                "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
                "--storage-driver=overlay2", "--exec-opt", "native.cgroupdriver=cgroupfs",
                "--log-level=warn", "--config-file", str(self._config())]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0",
                    "DOCKER_CONFIG": str(self.exec_root / "client")}
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                log = tail(log_path.read_text(errors="replace"))
                self.proc = None
                raise ImageBuildError(image, "dockerd start", f"dockerd exited ({dockerd}; log {log_path})", log)
            ok = subprocess.run([self.docker(), "version", "--format", "{{.Server.Version}}"], env=self.env,
                                capture_output=True, text=True)
            if ok.returncode == 0:
                return
            if time.monotonic() > deadline:
                log = tail(log_path.read_text(errors="replace"))
                self.close()
                raise ImageBuildError(image, "dockerd start", "dockerd did not answer within 60 s", log)
            time.sleep(0.2)

    def _config(self) -> Path:
        assert self.exec_root is not None
        path = self.exec_root / "daemon.json"
        # no registry mirrors, no pulls needed: every base is imported
        path.write_text(json.dumps({"features": {"buildkit": False}}))
        return path

    def run(self, image: str, step: str, *args: str, log: Path | None = None, cwd: Path | None = None) -> str:
        self.start(image)
        return run_step(image, step, [self.docker(), *args], log=log, env=self.env, cwd=cwd)

    def has(self, reference: str, image: str = "-") -> bool:
        self.start(image)
        return subprocess.run([self.docker(), "image", "inspect", reference], env=self.env,
                              capture_output=True).returncode == 0

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.exec_root is not None:
            remove_exec_root(self.exec_root)
            self.exec_root = None


def remove_exec_root(exec_root: Path) -> None:
    """Unmounts what dockerd left under its exec root (its bind mount of the host's network
    namespace, netns/default) and removes the directory."""
    for mountpoint in reversed(mounts_under(exec_root)):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    shutil.rmtree(exec_root, ignore_errors=True)


STALE_AFTER_SECONDS = 120
"""An exec root this old without a live dockerd is a killed build's: its close() never ran. A younger
one may be a concurrent build's whose dockerd has not written its pid file yet."""


def sweep_stale_exec_roots(now: float | None = None) -> list[Path]:
    """Removes the exec roots (/tmp/hk-dockerd-*) of builds that were killed before they could
    stop their dockerd and clean up: no live process in docker.pid, and older than
    STALE_AFTER_SECONDS. Returns what it removed."""
    now = time.time() if now is None else now
    removed = []
    for exec_root in Path("/tmp").glob("hk-dockerd-*"):
        pid_file = exec_root / "docker.pid"
        with contextlib.suppress(OSError, ValueError):
            if Path(f"/proc/{int(pid_file.read_text().strip())}").exists():
                continue  # its dockerd runs: another build, now
        try:
            age = now - exec_root.stat().st_mtime
        except OSError:
            continue
        if age > STALE_AFTER_SECONDS:
            remove_exec_root(exec_root)
            removed.append(exec_root)
    return removed


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, in mount order (from /proc/self/mountinfo)."""
    prefix = str(directory).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


@contextlib.contextmanager
def docker_daemon() -> Iterator[Docker]:
    """A Docker (lazily started) that is stopped on exit."""
    d = Docker()
    try:
        yield d
    finally:
        d.close()


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One build at a time on this cache (they share the dockerd data root)."""
    directory = images_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- building -------------------------------------------------------------------------------

@dataclass
class Result:
    """One image's outcome: its tar, size in bytes, seconds spent, whether it came from the cache."""

    name: str
    reference: str
    tar: Path
    size: int
    seconds: float
    cached: bool


def tar_path(image: Image, table: dict[str, Image]) -> Path:
    return images_dir() / f"{image.name}-{image_hash(image, table)}.tar"


def build_binary(image: Image) -> Path:
    """The Go binary of image.binary, built once into ~/.cache/hakeeper/tools/<name>-<version>/."""
    assert image.binary is not None
    name = image.binary
    version = binary_version(name, image.go_main)
    out = cache_root() / "tools" / f"{name}-{version}"
    binary = out / name
    if binary.exists():
        return binary
    print(f"imagebuild: building {name} {version} with go (cold: minutes)", file=sys.stderr)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    run_step(image.name, "go build", ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp) + "/",
                                      image.go_main],
             log=logs_dir() / f"{image.name}-go.log", env=env, cwd=REPO / "hack" / name, timeout=3600)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return binary


def _ordered(names: Iterable[str], table: dict[str, Image]) -> list[Image]:
    """The images named plus the images they are built on, bases first."""
    out: list[Image] = []

    def visit(name: str) -> None:
        if name not in table:
            raise KeyError(f"no image named {name!r}; known: {', '.join(table)}")
        image = table[name]
        if image.base.startswith("image:"):
            visit(image.base[len("image:"):])
        if image not in out:
            out.append(image)

    for name in names:
        visit(name)
    return out


def _base_argument(image: Image, table: dict[str, Image], docker: Docker) -> str:
    """The BASE build argument, with that base present in the daemon."""
    if image.base.startswith("image:"):
        parent = table[image.base[len("image:"):]]
        if not docker.has(parent.reference, image.name):
            docker.run(parent.name, "docker load", "load", "-i", str(tar_path(parent, table)))
        return parent.reference
    base = BASES[image.base]
    tag = base_tag(base)
    if not docker.has(tag, image.name):
        rootfs = make_base(base, image.name)
        docker.run(f"{image.name} (base {base.suite})", "docker import", "import", "--change", f"ENV {PATH_ENV}",
                   "--change", 'CMD ["bash"]', str(rootfs), tag)
    return tag


def _build_one(image: Image, table: dict[str, Image], docker: Docker) -> Path:
    out = tar_path(image, table)
    log = logs_dir() / f"{image.name}.log"
    base = _base_argument(image, table, docker)
    context = REPO / image.context_dir
    dockerfile = REPO / image.recipe / image.dockerfile
    with tempfile.TemporaryDirectory(prefix=f"imagebuild-{image.name}-") as staged:
        if image.binary:
            # the recipe directory plus the binary, as a context of its own
            binary = build_binary(image)
            context = Path(staged) / "context"
            shutil.copytree(REPO / image.context_dir, context)
            shutil.copy2(binary, context / image.binary)
            dockerfile = context / image.dockerfile
        args = ["build", "--network", "host", "--force-rm", "-t", image.reference, "-f", str(dockerfile),
                "--build-arg", f"BASE={base}", "--label", f"io.hakeeper.input-hash={image_hash(image, table)}"]
        for key, value in sorted(image.build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        docker.run(image.name, "docker build", *args, str(context), log=log)
    tmp = out.with_name(out.name + ".tmp")
    docker.run(image.name, "docker save", "save", "-o", str(tmp), image.reference)
    os.replace(tmp, out)
    _prune(out.parent, f"{image.name}-", keep=out)
    return out


def build_all(names: Iterable[str] | None = None, images: Iterable[Image] | None = None,
              keep_going: bool = False) -> list[Result]:
    """Like build(), returning a Result per image (the named ones and those they are built on).

    keep_going: after a failure, build the images that do not depend on the failed one, then
    raise the first failure (its message lists the others)."""
    table = by_name(tuple(images) if images is not None else IMAGES)
    wanted = _ordered(list(names) if names is not None else list(table), table)
    results: list[Result] = []
    failures: list[ImageBuildError] = []
    with cache_lock(), docker_daemon() as docker:
        for image in wanted:
            started = time.monotonic()
            out = tar_path(image, table)
            cached = out.exists()
            if not cached:
                if image.base.startswith("image:") and image.base[6:] in {f.image for f in failures}:
                    continue
                print(f"imagebuild: building {image.name} ({image.reference})", file=sys.stderr)
                try:
                    _build_one(image, table, docker)
                except ImageBuildError as e:
                    if not keep_going:
                        raise
                    print(f"imagebuild: {e}", file=sys.stderr)
                    failures.append(e)
                    continue
            results.append(Result(image.name, image.reference, out, out.stat().st_size,
                                  time.monotonic() - started, cached))
            if not cached:
                print(f"imagebuild: built {image.name} in {results[-1].seconds:.0f} s, "
                      f"{results[-1].size / 1e6:.0f} MB", file=sys.stderr)
        if docker.proc is not None:
            _tidy(docker)
    if failures:
        first = failures[0]
        others = ", ".join(f"{f.image} ({f.step})" for f in failures[1:])
        detail = first.args[0].split("\n")[0].split(" failed: ", 1)[-1] + (f"; also failed: {others}" if others else "")
        raise ImageBuildError(first.image, first.step, detail, first.log)
    return results


def _tidy(docker: Docker) -> None:
    """Drops bases of other hashes and images no tag names any more (older builds), so the data
    root under ~/.cache/hakeeper/docker does not grow with every change."""
    current = {base_tag(base) for base in BASES.values()}
    listed = subprocess.run([docker.docker(), "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                             BASES["bookworm"].tag_repository], env=docker.env, capture_output=True, text=True)
    stale = [tag for tag in listed.stdout.split() if tag not in current]
    if stale:
        subprocess.run([docker.docker(), "image", "rm", *stale], env=docker.env, capture_output=True)
    subprocess.run([docker.docker(), "image", "prune", "-f"], env=docker.env, capture_output=True)


def build(names: Iterable[str] | None = None, images: Iterable[Image] | None = None) -> dict[str, Path]:
    """Builds the images named (default: every image of the table) and those they are built on,
    each only when its tar for the current inputs is missing.

    names:  table names (see `imagebuild list`); an unknown name raises KeyError.
    images: a table to use instead of table.IMAGES (tests pass a broken recipe this way).
    Returns {name: path of the `docker save` tar}. Raises ImageBuildError naming the image and
    the step that failed (mmdebstrap base, go build, docker import, docker build, docker save),
    with the last lines of its log.
    """
    return {r.name: r.tar for r in build_all(names, images)}


def format_table(results: list[Result]) -> str:
    rows = [("image", "reference", "size", "seconds", "cached")]
    rows += [(r.name, r.reference, f"{r.size / 1e6:.0f} MB", f"{r.seconds:.1f}", "yes" if r.cached else "no")
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
