"""A qemu VM running Debian's kernel (which has IPVS) over this machine's files, for the lvs tier.

This machine's kernel has no IPVS (keepalived_support.py runs VRRP only). Debian's kernel
package has ip_vs, its schedulers and ipip as modules, so the lvs tier boots it under qemu:

    host                                     guest (Debian's linux-image-*-amd64)
    ~/.cache/hakeeper/lvsvm/<key>/           /init (busybox, from the initramfs):
      vmlinuz, initramfs.cpio,                 insmod virtio + 9p, mount the host's / read-only
      lib/modules/<version>/ (depmod -b)       (9p, tag hostroot) on /host, tmpfs on /host/tmp,
    job directory (read-only share, tag        /host/run, /host/var/tmp, /host/dev/shm; the job
      job): run.sh, job.json, configs          directory on /host/run/hk-job; chroot /host and
                                               run the job's run.sh; power off
    serial console  <── one line per result ── the job's program (the host's own Python)

`ensure_image()` builds the kernel, modules and initramfs once per (kernel package, init
script) and caches them; `run_job()` boots a VM for one job directory, reads its console until
the guest powers off or a deadline passes (then kills qemu), and returns the lines the job
printed. The guest writes only to tmpfs; nothing it does survives it.

Facts this relies on (verified on this machine, /work/shared/notes/real-node-and-vm.md): the
virtio and 9p modules in the order of BOOT_MODULES, busybox's modprobe ignoring soft
dependencies (the job loads modules with the host's kmod modprobe instead, which does not).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import pathlib
import re
import select
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator

KERNEL_META_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
QEMU = "qemu-system-x86_64"
BOOT_MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
                "netfs", "fscache", "9pnet", "9pnet_virtio", "9p")
"""Loaded by /init in this order (each needs the ones before it) to reach the host's files."""
MARK = "@@hk "
"""Prefix of the console lines a job reports; everything else on the console is the kernel's."""
JOB_DIR_IN_GUEST = "/run/hk-job"
TMPFS_DIRS = ("/tmp", "/run", "/var/tmp")
"""Where the guest mounts tmpfs over the host's files (/init)."""


def kept(paths: Iterator[pathlib.Path] | list[pathlib.Path]) -> list[str]:
    """Those of `paths` (absolute) that lie under TMPFS_DIRS: /init binds them back over its tmpfs,
    so that a checkout in /tmp (CI clones into `mktemp -d`) is seen in the guest. Raises
    ValueError for a path with a space or newline (/init reads the list with the shell)."""
    out = []
    for path in paths:
        text = str(path)
        if any(c.isspace() for c in text):
            raise ValueError(f"{text!r}: the lvs tier cannot keep a path with white space")
        if any(text == d or text.startswith(d + "/") for d in TMPFS_DIRS):
            out.append(text)
    # a path inside another one comes with it
    return [p for p in sorted(set(out)) if not any(p.startswith(q + "/") for q in out)]

INIT = r"""#!/bin/busybox sh
# hakeeper lvs tier: reach the host's files, run the job, power off (never return: PID 1)
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "@@hk init-failed $*"; poweroff -f; }
for m in $(cat /modules/order); do insmod /modules/$m.ko || fail "insmod $m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host || fail "mount hostroot"
mkdir -p /job /keep
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 job /job || fail "mount job"
# the host directories the job needs under the tmpfs mounts below (a checkout in /tmp) stay seen
i=0; for p in $(cat /job/keep); do mkdir -p /keep/$i; mount -o bind /host$p /keep/$i || fail "keep $p"; i=$((i+1)); done
for d in tmp run var/tmp; do mount -t tmpfs -o mode=1777 tmpfs /host/$d || fail "tmpfs $d"; done
i=0; for p in $(cat /job/keep); do mkdir -p /host$p; mount -o bind /keep/$i /host$p || fail "restore $p"; i=$((i+1)); done
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mkdir -p /host/run/hk-job
mount -o bind /job /host/run/hk-job || fail "bind job"
chroot /host /bin/sh /run/hk-job/run.sh
echo "@@hk exit $?"
poweroff -f
"""


def cache_root() -> pathlib.Path:
    """~/.cache/hakeeper/lvsvm ($XDG_CACHE_HOME respected)."""
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "hakeeper" / "lvsvm"


@dataclasses.dataclass(frozen=True)
class Image:
    """A built VM: kernel, initramfs and the unpacked modules tree (depmod run on it)."""

    directory: pathlib.Path
    kernel_release: str
    """uname -r in the guest, e.g. 6.1.0-57-amd64."""

    @property
    def kernel(self) -> pathlib.Path:
        return self.directory / "vmlinuz"

    @property
    def initramfs(self) -> pathlib.Path:
        return self.directory / "initramfs.cpio"

    @property
    def modules(self) -> pathlib.Path:
        """The directory to bind on /lib/modules in the guest."""
        return self.directory / "lib" / "modules"


def kernel_package() -> str:
    """The versioned kernel package the meta package depends on (linux-image-6.1.0-N-amd64).

    Raises RuntimeError when apt knows no such package (run `apt-get update`)."""
    done = subprocess.run(["apt-cache", "depends", KERNEL_META_PACKAGE], capture_output=True, text=True)
    found = re.search(r"Depends: (linux-image-\S+)", done.stdout)
    if done.returncode != 0 or not found:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        done = subprocess.run(["apt-cache", "depends", KERNEL_META_PACKAGE], capture_output=True, text=True)
        found = re.search(r"Depends: (linux-image-\S+)", done.stdout)
    if not found:
        raise RuntimeError(f"apt knows no {KERNEL_META_PACKAGE}: {done.stderr.strip()}")
    return found.group(1)


def _download(package: str, directory: pathlib.Path) -> pathlib.Path:
    """apt-get download `package` into `directory`; the .deb's path."""
    subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package], cwd=directory,
                   check=True, capture_output=True)
    debs = sorted(directory.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise RuntimeError(f"apt-get download {package} left {debs}")
    return debs[0]


def _cpio(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """An uncompressed cpio archive in the "newc" format the kernel unpacks as initramfs
    (Documentation/driver-api/early-userspace/buffer-format.rst). Entries: (name, mode, data,
    rdev); rdev is major << 8 | minor for device nodes."""
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        pad()
        out.extend(data)
        pad()
    return bytes(out)


def _image_key(package: str) -> str:
    digest = hashlib.sha256((INIT + " ".join(BOOT_MODULES)).encode()).hexdigest()[:12]
    return f"{package.removeprefix('linux-image-')}-{digest}"


def ensure_image() -> Image:
    """The cached VM image, built first when missing (downloads two Debian packages, ~70 MB).

    Raises RuntimeError or subprocess.CalledProcessError when a package cannot be fetched or
    unpacked (apt, dpkg-deb and depmod must be on PATH: Debian's apt, dpkg, kmod)."""
    package = kernel_package()
    release = package.removeprefix("linux-image-")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / _image_key(package)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions building at once would both download
        if (target / "initramfs.cpio").exists():
            return Image(target, release)
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as scratch:
            work = pathlib.Path(scratch)
            unpacked = work / "kernel"
            subprocess.run(["dpkg-deb", "-x", str(_download(package, work)), str(unpacked)], check=True)
            busybox_root = work / "busybox"
            subprocess.run(["dpkg-deb", "-x", str(_download(BUSYBOX_PACKAGE, work)), str(busybox_root)], check=True)
            subprocess.run(["depmod", "-b", str(unpacked), release], check=True)
            built = work / "image"
            built.mkdir()
            shutil.copy(unpacked / "boot" / f"vmlinuz-{release}", built / "vmlinuz")
            (built / "lib").mkdir()
            shutil.move(str(unpacked / "lib" / "modules"), str(built / "lib" / "modules"))
            tree = built / "lib" / "modules" / release / "kernel"
            entries: list[tuple[str, int, bytes, int]] = [
                (d, stat.S_IFDIR | 0o755, b"", 0) for d in ("bin", "dev", "proc", "sys", "host", "modules")]
            entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", 5 << 8 | 1))
            entries.append(("bin/busybox", stat.S_IFREG | 0o755, (busybox_root / "bin" / "busybox").read_bytes(), 0))
            entries.append(("init", stat.S_IFREG | 0o755, INIT.encode(), 0))
            for name in BOOT_MODULES:
                (found,) = tree.rglob(f"{name}.ko")
                entries.append((f"modules/{name}.ko", stat.S_IFREG | 0o644, found.read_bytes(), 0))
            entries.append(("modules/order", stat.S_IFREG | 0o644, " ".join(BOOT_MODULES).encode(), 0))
            (built / "initramfs.cpio").write_bytes(_cpio(entries))
            built.rename(target)
        return Image(target, release)


@dataclasses.dataclass
class Run:
    """What a VM printed: the job's marked lines (MARK removed), the whole console, the time."""

    lines: list[str]
    console: str
    seconds: float
    exit_code: int | None
    """The job's exit status as /init reported it; None when the VM never got that far."""


@contextlib.contextmanager
def _qemu(image: Image, job: pathlib.Path, memory: int, cpus: int) -> Iterator[subprocess.Popen[bytes]]:
    # software emulation (TCG): this machine has /dev/kvm, but qemu under it aborts ("failed to
    # set MSR 0x10a") or hangs after SeaBIOS
    command = [
        QEMU, "-accel", "tcg", "-m", str(memory), "-smp", str(cpus), "-nographic", "-no-reboot",
        "-nic", "none", "-serial", "stdio", "-monitor", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initramfs),
        "-append", "console=ttyS0 quiet loglevel=3 panic=-1",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={job},mount_tag=job,security_model=none,readonly=on",
    ]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def run_job(image: Image, job: pathlib.Path, *, deadline: float, memory: int = 1024, cpus: int = 2,
            echo: bool = False) -> Run:
    """Boots the VM with `job` shared at JOB_DIR_IN_GUEST; /init runs `sh run.sh` from it.

    deadline: seconds after which qemu is killed (the guest powers off by itself when its job
    ends). echo: copy the console to stdout as it comes (for a person watching).
    Returns the job's MARK lines in order (without the mark), the console, the seconds taken.
    """
    start = time.monotonic()
    console = bytearray()
    with _qemu(image, job, memory, cpus) as proc:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            left = start + deadline - time.monotonic()
            if left <= 0:
                console.extend(f"\n[host] deadline of {deadline}s passed: qemu killed\n".encode())
                break
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                console.extend(chunk)
                if echo:
                    os.write(1, chunk)
    text = console.decode(errors="replace").replace("\r\n", "\n")
    lines = [line.split(MARK, 1)[1] for line in text.splitlines() if MARK in line]
    exit_code = next((int(line.split()[1]) for line in lines if re.fullmatch(r"exit \d+", line)), None)
    return Run([line for line in lines if not re.fullmatch(r"exit \d+", line)], text,
               time.monotonic() - start, exit_code)
