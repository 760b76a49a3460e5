"""ReplicatedDatabase members as a real kubelet runs them, without Kubernetes.

The server images (images/mariadb, images/mysql) are built and cached as `docker save`
tarballs by hack/imagebuild (~/.cache/hakeeper/images/<name>-<hash>.tar). Here a tarball's
layers are unpacked, whiteouts applied, into a root filesystem cached next to it
(~/.cache/hakeeper/rootfs/<name>-<hash>), and each member of a StatefulSet built by
hakeeper.replicateddatabase.objects runs the way the kubelet would run that pod:

- its volumes are directories: the claim a world-writable one (a hostPath volume, where
  fsGroup does not apply), the emptyDirs 0777, the ConfigMap's my.cnf written from the
  builder's ConfigMap;
- each container runs in its own mount and UTS namespaces (host name: the pod's), chrooted into the image's root filesystem
  mounted read-only when readOnlyRootFilesystem says so, with the volumes bind-mounted at their
  mountPaths, as the pod's runAsUser/runAsGroup with fsGroup as its only supplementary group,
  with no capabilities and no_new_privs (allowPrivilegeEscalation: false);
- the init container's command and env (HOSTNAME = the pod name, POD_IP, the Secret's
  passwords) and then the server container's command and args, with $(VAR) expanded as the
  kubelet does. POD_IP is a loopback address of its own (127.0.<net>.<ordinal+1>), or the
  address a test gives it;
- a member may run in a network namespace of its own (PodFleet(netns=...)): both containers,
  as in a pod, so a test can cut the member's network while its server keeps running; its
  unix socket (in the "run" volume, a host directory) still reaches it (Pod.admin).

Only what is in the StatefulSet decides how the server starts: nothing here adds an option.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from hakeeper.api.replicateddatabase import ReplicatedDatabaseSpec
from hakeeper.replicateddatabase import objects
from hakeeper.replicateddatabase.clustering import Credentials
from hakeeper.replicateddatabase.clustering.flavor import flavor_for
from hakeeper.replicateddatabase.reseed import Entry

from ..support.polling import poll
from .mariadb_support import APP_PASSWORD, Members, ServerProcess, stop_background

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hakeeper"
ROOTFS = CACHE / "rootfs"
NAMESPACE = "integration"
DB = "db"
# Passwords a user might choose: the init file must escape them.
PASSWORDS = {"root-password": "r00t'pa\\ss", "replication-password": "repl-'secret'",
             "operator-password": "op\\'secret", "application-password": APP_PASSWORD}
CREDENTIALS = Credentials(root_password=PASSWORDS["root-password"],
                          replication_password=PASSWORDS["replication-password"],
                          operator_password=PASSWORDS["operator-password"],
                          replication_user=objects.REPLICATION_USER, operator_user=objects.OPERATOR_USER)
# Small footprint, through spec.config as a user would set it: three servers on two cores. The
# sql_mode a user might choose: the init file and the operator's statements must not depend on
# backslash escapes (the passwords above have backslashes and quotes).
SQL_MODE = "NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES"
SMALL = {
    "mariadb": {"innodb_buffer_pool_size": "32M", "innodb_log_file_size": "16M", "performance_schema": "OFF",
                "max_connections": "100", "key_buffer_size": "1M", "table_open_cache": "200", "sql_mode": SQL_MODE},
    "mysql": {"innodb_buffer_pool_size": "32M", "innodb_redo_log_capacity": "16M", "performance_schema": "OFF",
              "max_connections": "100", "table_open_cache": "200", "innodb_use_native_aio": "OFF",
              "sql_mode": SQL_MODE},
}
NETS = {"mariadb": 41, "mysql": 42}
_rootfs_lock = threading.Lock()


# ------------------------------------------------------------------------ the images

def image_tarball(name: str) -> Path:
    """The image's `docker save` tar for the recipe as it is now (hack/imagebuild builds it when
    missing, and raises ImageBuildError naming the step when it cannot)."""
    import imagebuild

    return imagebuild.build([name])[name]


def rootfs(name: str) -> Path:
    """The image's root filesystem, unpacked once per tarball (its name carries the hash)."""
    tarball = image_tarball(name)
    target = ROOTFS / tarball.stem
    with _rootfs_lock:
        ROOTFS.mkdir(parents=True, exist_ok=True)
        with open(ROOTFS / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / ".complete").exists():
                scratch = Path(tempfile.mkdtemp(prefix=f".{tarball.stem}-", dir=ROOTFS))
                try:
                    _unpack(tarball, scratch)
                    shutil.rmtree(target, ignore_errors=True)
                    scratch.rename(target)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
    return target


def _unpack(tarball: Path, root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="hk-image-") as work:
        subprocess.run(["tar", "-xf", str(tarball), "-C", work], check=True, timeout=300)
        manifest = json.loads((Path(work) / "manifest.json").read_text())
        config = json.loads((Path(work) / manifest[0]["Config"]).read_text())
        for layer in manifest[0]["Layers"]:
            path = Path(work) / layer
            with tarfile.open(path) as tar:
                entries = [m.name for m in tar.getmembers()]
            for entry in entries:  # whiteouts remove what lower layers put there
                head, _, base = entry.rstrip("/").rpartition("/")
                if base == ".wh..wh..opq":
                    opaque = root / head
                    if opaque.is_dir():
                        for child in opaque.iterdir():
                            _remove(child)
                elif base.startswith(".wh."):
                    _remove(root / head / base[len(".wh."):])
            subprocess.run(["tar", "-xpf", str(path), "--numeric-owner", "--exclude=.wh.*", "-C", str(root)],
                           check=True, timeout=300)
    (root / ".image-config.json").write_text(json.dumps(config.get("config") or {}))
    (root / ".complete").write_text(tarball.name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def image_env(root: Path) -> dict[str, str]:
    config = json.loads((root / ".image-config.json").read_text())
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def image_user(root: Path, user: str = "mysql") -> tuple[int, int]:
    """uid and gid of `user` in the image's /etc/passwd."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"the image has no {user} user")


# ------------------------------------------------------------------------ the kubelet

def expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) -> env[VAR]; $$ -> $; an unknown $(VAR) stays as it is (the kubelet's rules)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def container_argv(spec: dict[str, Any], pod: Pod) -> list[str]:
    """argv (run as root) that starts one container of `pod` as the kubelet would."""
    security = {**pod.pod_security, **(spec.get("securityContext") or {})}
    assert security.get("runAsNonRoot") and security.get("runAsUser"), "the containers must not run as root"
    uid, gid = security["runAsUser"], security.get("runAsGroup", 0)
    groups = ",".join(str(g) for g in [gid, pod.pod_security.get("fsGroup")] if g is not None)
    root = pod.base / "root"
    env = {**image_env(pod.rootfs), "HOSTNAME": pod.name}
    for item in spec.get("env") or []:
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
        elif "fieldRef" in item.get("valueFrom", {}):
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            env[item["name"]] = pod.host
        else:
            env[item["name"]] = PASSWORDS[item["valueFrom"]["secretKeyRef"]["key"]]
    argv = [expand(a, env) for a in [*(spec.get("command") or []), *(spec.get("args") or [])]]
    setup = [f"hostname {pod.name}", f"mount --bind {pod.rootfs} {root}"]
    if security.get("readOnlyRootFilesystem"):
        setup.append(f"mount -o remount,bind,ro {root}")
    setup += [f"mount --rbind /dev {root}/dev", f"mount -t proc proc {root}/proc"]
    for mount in spec.get("volumeMounts") or []:
        source = pod.volumes[mount["name"]]
        setup.append(f"mount --bind {source} {root}{mount['mountPath']}")
        if mount.get("readOnly") or mount["name"] == "base-conf":  # a ConfigMap volume is read-only
            setup.append(f"mount -o remount,bind,ro {root}{mount['mountPath']}")
    if security.get("capabilities", {}).get("drop") != ["ALL"] or security.get("allowPrivilegeEscalation", True):
        raise AssertionError("the containers must drop every capability and forbid privilege escalation")
    # chroot switches to the user (the capabilities go with uid 0); no_new_privs keeps them gone
    run = ["setpriv", "--no-new-privs", "chroot", f"--userspec={uid}:{gid}", f"--groups={groups}", str(root),
           "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
    script = " && ".join(setup) + " && exec " + shlex.join(run)
    # `ip netns exec` and unshare exec what follows (no fork): the process is the server's
    netns = ["ip", "netns", "exec", pod.netns] if pod.netns else []
    return [*netns, "unshare", "--mount", "--uts", "--propagation", "private", "--", "sh", "-ec", script]


class Pod(ServerProcess):
    """One member: the init container once per start(), then the server container."""

    def __init__(self, fleet: PodFleet, index: int) -> None:
        self.fleet, self.index = fleet, index
        self.flavor = fleet.flavor
        self.name = f"{DB}-{index}"
        self.host = fleet.hosts[index] if fleet.hosts else f"127.0.{NETS[self.flavor]}.{index + 1}"
        self.netns = fleet.netns.get(index)
        self.port = 3306
        self.base = fleet.base / self.name
        self.rootfs = fleet.rootfs
        template = fleet.statefulset["spec"]["template"]["spec"]
        self.pod_security = template["securityContext"]
        self.init_spec, = template["initContainers"]
        self.server_spec, *self.sidecar_specs = template["containers"]
        self.volumes: dict[str, Path] = {}
        for volume in template["volumes"]:
            self.volumes[volume["name"]] = self.base / "volumes" / volume["name"]
        self.volumes["data"] = self.base / "volumes" / "data"  # the claim: a hostPath directory
        self.process: subprocess.Popen | None = None
        self.sidecars: list[subprocess.Popen] = []
        """The pod's other containers (MariaDB's backup container), started after the server."""
        self.init_output = ""

    def prepare(self) -> None:
        (self.base / "root").mkdir(parents=True, exist_ok=True)
        for name, path in self.volumes.items():
            path.mkdir(parents=True, exist_ok=True)
            if name == "base-conf":
                (path / "my.cnf").write_text(self.fleet.config_map["data"]["my.cnf"])
                path.chmod(0o755)
            else:
                path.chmod(0o777)  # emptyDir's mode; the hostPath claim's too (fsGroup does not apply)

    def fresh_volumes(self) -> None:
        """A new pod: emptyDirs start empty; the claim and the ConfigMaps (base-conf; reseed,
        which a test writes as the operator would) and any other volume a test adds stay."""
        for name, path in self.volumes.items():
            if name in objects.SCRATCH_VOLUMES:
                shutil.rmtree(path, ignore_errors=True)
        self.prepare()

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def start(self, timeout: float = 120) -> None:
        assert not self.running, f"{self.name} already running"
        self.fresh_volumes()
        init = subprocess.run(container_argv(self.init_spec, self), capture_output=True, text=True, timeout=300)
        self.init_output = init.stdout + init.stderr
        if init.returncode != 0:
            raise RuntimeError(f"{self.name}: init container exited {init.returncode}:\n{self.init_output[-4000:]}")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(container_argv(self.server_spec, self), stdout=log, stderr=log,
                                            start_new_session=True)
        try:
            # the server refuses connections until it is up: any error means "not yet"
            poll(self._answers, timeout, what=f"{self.name} to accept connections", interval=0.2, ignore=Exception)
        except AssertionError:
            raise TimeoutError(f"{self.name} did not start; log tail:\n{self.log_tail()}") from None
        for spec in self.sidecar_specs:
            with open(self.base / f"{spec['name']}.log", "ab") as log:
                self.sidecars.append(subprocess.Popen(container_argv(spec, self), stdout=log, stderr=log,
                                                      start_new_session=True))

    def sidecar_log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """kill -9 of every container of the pod (the server's: ServerProcess.kill)."""
        self._stop_sidecars()
        super().kill()

    def stop(self) -> None:
        self._stop_sidecars()
        super().stop()

    def _stop_sidecars(self) -> None:
        for process in self.sidecars:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        self.sidecars = []

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log tail:\n{self.log_tail()}")
        self.value("SELECT 1")
        return True

    def connect(self, user: str = "root", password: str | None = None, **kwargs: Any) -> pymysql.Connection:
        """Over TCP, as a client in another pod would (root@'%' by default)."""
        password = PASSWORDS["root-password"] if password is None else password
        return pymysql.connect(host=self.host, port=self.port, user=user, password=password, autocommit=True,
                               connect_timeout=2, read_timeout=kwargs.pop("read_timeout", 10), **kwargs)

    _root_connection = connect  # query() and value() go over TCP as root

    @property
    def socket(self) -> str:
        """The server's unix socket (my.cnf: RUN_DIR/mysqld.sock), in the pod's "run" volume."""
        return str(self.volumes["run"] / "mysqld.sock")

    def admin(self, **kwargs: Any) -> pymysql.Connection:
        """root over the unix socket, which a cut network does not touch. The socket's client is
        root@localhost, not root@'%': on MySQL init.sql gives it the root password; on MariaDB it
        is socket-authenticated as the OS user root (mariadb-install-db
        --auth-root-authentication-method=socket), which the tests run as."""
        return pymysql.connect(unix_socket=self.socket, user="root", password=PASSWORDS["root-password"],
                               autocommit=True, connect_timeout=2, read_timeout=kwargs.pop("read_timeout", 10),
                               **kwargs)

    def server_uids(self) -> tuple[int, int]:
        """Real uid and gid of the running server process."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()  # type: ignore[union-attr]
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        gid = int(re.search(r"^Gid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        return uid, gid

    def server_capabilities(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()  # type: ignore[union-attr]
        return int(re.search(r"^CapEff:\s+([0-9a-f]+)", status, re.M).group(1), 16)  # type: ignore[union-attr]


class PodFleet(Members):
    """The members of one ReplicatedDatabase, started from the image as the StatefulSet starts
    them, for the clustering loop (mariadb_support: LoopDriver, bootstrap, Writer).

    hosts: each member's POD_IP (the address it binds), by ordinal; 127.0.<net>.<ordinal+1> by
    default. netns: ordinal -> the network namespace that member's pod runs in (the test makes
    it, and the route to the others' addresses: mariadb_support.NetnsLink)."""

    def __init__(self, spec: ReplicatedDatabaseSpec, hosts: list[str] | None = None,
                 netns: dict[int, str] | None = None) -> None:
        self.spec, self.flavor = spec, spec.flavor
        self.hosts, self.netns = hosts, dict(netns or {})
        self.credentials = CREDENTIALS
        self.rootfs = rootfs(spec.flavor)
        self.statefulset = objects.statefulset(DB, NAMESPACE, spec)
        # mount points: runc makes them in the container's writable layer
        template = self.statefulset["spec"]["template"]["spec"]
        for container in [*template["initContainers"], *template["containers"]]:
            for mount in container["volumeMounts"]:
                (self.rootfs / mount["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
        for path in ("dev", "proc"):
            (self.rootfs / path).mkdir(exist_ok=True)
        self.config_map = objects.config_map(DB, NAMESPACE, spec)
        # under the cache's filesystem, not /tmp (a tmpfs would make O_DIRECT fail)
        work = CACHE / "work"
        work.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix=f"{spec.flavor}-", dir=work))
        self.base.chmod(0o755)
        self.instances = [Pod(self, i) for i in range(spec.replicas)]


def reseed(loop: Any, pod: Pod, donor: str, copy_id: str, keep: str) -> None:
    """What the operator does: on MySQL the copy first (the member's server clones the donor
    into its volume); then the entry in the member's file of the ConfigMap volume, then a new pod."""
    if pod.flavor == "mysql":
        ok, events = loop.cluster.clone(loop.members, pod.name, donor, f"{objects.VOLUME_DIR}/.reseed-{copy_id}")
        assert ok, events
        assert (pod.volumes["data"] / f".reseed-{copy_id}").is_dir()
    entry = Entry(member=pod.name, id=copy_id, donor=donor, host=loop.fleet.by_name(donor).host, phase="restart",
                  keep=keep, pod="uid-1", started="2026-11-29T20:00:00Z")  # type: ignore[arg-type]
    (pod.volumes["reseed"] / pod.name).write_text(entry.render())
    pod.stop()
    pod.start()


def database_spec(flavor: str, replicas: int = 3, **overrides: Any) -> ReplicatedDatabaseSpec:
    return ReplicatedDatabaseSpec.model_validate({
        "flavor": flavor, "replicas": replicas, "config": SMALL[flavor], **overrides})


def pod_fleet_fixture(spec: ReplicatedDatabaseSpec, **kwargs: Any) -> Iterator[PodFleet]:
    """Body of the tests' fixtures: start the members (kwargs: PodFleet's hosts, netns), stop
    every one (and every loop and writer thread) afterwards."""
    fleet = PodFleet(spec, **kwargs)
    try:
        yield fleet.start()
    finally:
        stop_background()
        fleet.close()


def replica_row(pod: Pod) -> dict:
    rows = pod.query(flavor_for(pod.flavor).replica_status_sql)
    return rows[0] if rows else {}


# ------------------------------------------------------------------------ semi-sync forced off

@contextlib.contextmanager
def replication_cut(primary_host: str) -> Iterator[None]:
    """Drop every packet the database servers (uid SERVER_UID) send to the primary's port: the
    replicas' acknowledgements and their TCP ACKs, so nothing more reaches them either; the
    operator's and the writer's connections (root) still do. iptables' owner match."""
    rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "-d", primary_host, "--dport", "3306",
            "-m", "owner", "--uid-owner", str(objects.SERVER_UID), "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], check=False)


def fall_back_then_kill(loop: Any, writer: Any, primary: Pod, asynchronous: int = 50) -> tuple[float, float]:
    """With the primary's replication links cut, wait for the loop to see its semi-sync fall back
    and for `asynchronous` writes acknowledged after the cut (on no replica), then kill -9 it;
    the links come back. Returns (cut, killed) as time.monotonic()."""
    with replication_cut(primary.host):
        cut = time.monotonic()
        loop.wait(lambda r: r.memory.primary_semi_sync is False, 30, "the loop to see semi-sync fall back")
        poll(lambda: len(writer.acked_since(cut)) >= asynchronous, 30, what="writes acknowledged asynchronously")
        primary.kill()
        killed = time.monotonic()
    return cut, killed
