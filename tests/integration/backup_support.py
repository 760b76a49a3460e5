"""Backup jobs and restores against real servers and a real object store, without Kubernetes.

A backup run is a container of the database's image, run as a kubelet would run a Job's pod
(mysql_support.container_argv: the image's root filesystem, the mysql user, no capability, a
read-only root, emptyDirs for /tmp and the configuration), executing
replicateddatabase.backup.backup_script with the environment job_env gives it and the passwords
and the store's keys as a Secret would. A restore is a new one-member PodFleet whose init
container runs objects.init_script with backup.restore_script: the member then starts from the
restored data exactly as the StatefulSet starts it.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hakeeper.replicateddatabase import backup, objects
from hakeeper.replicateddatabase.clustering import Policy

from ..support.objectstore import ObjectStore
from .mariadb_support import LoopDriver
from .mysql_support import CACHE, DB, PodFleet, container_argv, database_spec

BACKUP_MOUNT = "/backup"
"""Where a volume target (the PersistentVolumeClaim) is mounted in the job and the restore."""


def s3_target(store: ObjectStore, prefix: str = "hk") -> backup.Target:
    return backup.Target("s3", prefix=prefix, bucket=store.bucket, endpoint=store.endpoint)


def store_keys(store: ObjectStore | None) -> dict[str, str]:
    """The store's access key and secret as the job's Secret would give them to rclone."""
    if store is None:
        return {}
    return {"RCLONE_CONFIG_STORE_ACCESS_KEY_ID": store.access_key,
            "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY": store.secret_key}


def _secret(*keys: str) -> list[dict[str, Any]]:
    return [{"name": key.upper().replace("-", "_"),
             "valueFrom": {"secretKeyRef": {"name": f"{DB}-credentials", "key": key}}} for key in keys]


@dataclasses.dataclass
class JobPod:
    """What container_argv needs of a pod, for a one-container Job (its volumes: emptyDirs for
    tmp and conf, the database's ConfigMap at base-conf, and the volume target if any)."""

    fleet: PodFleet
    name: str
    volume_target: Path | None = None
    tmp_files: dict[str, str] = dataclasses.field(default_factory=dict)
    """Files put into the pod's /tmp volume before it runs (name -> text), e.g. a CA bundle."""

    def __post_init__(self) -> None:
        self.host, self.netns = "127.0.0.1", None
        self.rootfs = self.fleet.rootfs
        self.pod_security = dict(objects.POD_SECURITY)
        self.base = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.fleet.base))
        self.base.chmod(0o755)
        (self.base / "root").mkdir()
        self.volumes: dict[str, Path] = {}
        for name in ("tmp", "conf", "base-conf"):
            self.volumes[name] = self.base / "volumes" / name
            self.volumes[name].mkdir(parents=True)
            self.volumes[name].chmod(0o777)
        (self.volumes["base-conf"] / "my.cnf").write_text(self.fleet.config_map["data"]["my.cnf"])
        for name, text in self.tmp_files.items():
            (self.volumes["tmp"] / name).write_text(text)
            (self.volumes["tmp"] / name).chmod(0o644)
        self.volumes["base-conf"].chmod(0o755)
        if self.volume_target is not None:
            self.volumes["backup"] = self.volume_target
            (self.rootfs / BACKUP_MOUNT.lstrip("/")).mkdir(exist_ok=True)

    def mounts(self) -> list[dict[str, Any]]:
        paths = {"tmp": objects.TMP_DIR, "conf": objects.CONF_DIR, "base-conf": objects.BASE_CONF_DIR,
                 "backup": BACKUP_MOUNT}
        return [{"name": name, "mountPath": paths[name]} for name in self.volumes]

    def run(self, script: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
        """Runs `script` (sh -c) in the flavor's image as the job's container would; returns the
        finished process (stdout and stderr as text), whatever its exit status."""
        spec = {"name": "job", "command": ["sh", "-c", script],
                "env": [*({"name": k, "value": v} for k, v in env.items()),
                        *_secret("replication-password", "operator-password")],
                "volumeMounts": self.mounts(), "securityContext": dict(objects.CONTAINER_SECURITY)}
        return subprocess.run(container_argv(spec, self), capture_output=True, text=True, timeout=timeout)  # type: ignore[arg-type]


def run_backup(fleet: PodFleet, target: backup.Target, source: str, primary: str, store: ObjectStore | None,
               volume: Path | None = None, keep: int = 0,
               tmp_files: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One backup run: the replica at `source` copied, the primary's binary logs stored; the
    newest `keep` complete backups kept (0: all); tmp_files: JobPod.tmp_files."""
    job = JobPod(fleet, f"{DB}-backup", volume, tmp_files or {})
    env = {**backup.job_env(target, DB, source, primary, keep), **store_keys(store)}
    return job.run(backup.backup_script(fleet.flavor), env)


def read_manifests(fleet: PodFleet, target: backup.Target, store: ObjectStore | None,
                   volume: Path | None = None, tmp_files: dict[str, str] | None = None) -> list[backup.Manifest]:
    """The manifests in the store (rclone in the image, as a job would read them), parsed."""
    job = JobPod(fleet, f"{DB}-list", volume, tmp_files or {})
    root = target.root(DB)
    script = (f'for m in $(rclone lsf "{root}/base/" --dirs-only); do '
              f'echo "=== $m"; rclone cat "{root}/base/${{m}}{backup.MANIFEST}" || true; done')
    done = job.run(script, {**target.env(), **store_keys(store)}, timeout=120)
    assert done.returncode == 0, done.stderr
    texts = {chunk.split("\n", 1)[0]: chunk.split("\n", 1)[1] for chunk in done.stdout.split("=== ")[1:]
             if chunk.split("\n", 1)[1].strip()}
    return backup.manifests_from(texts)


class RestoredFleet(PodFleet):
    """A new database of one member whose init container restores `restore` from the store
    before it would initialise an empty datadir."""

    def __init__(self, flavor: str, target: backup.Target, restore: backup.Restore, store: ObjectStore | None,
                 host: str, volume: Path | None = None) -> None:
        super().__init__(database_spec(flavor, replicas=1), hosts=[host])
        template = self.statefulset["spec"]["template"]["spec"]
        init = template["initContainers"][0]
        init["command"] = ["sh", "-c", objects.init_script(flavor, backup.restore_script(flavor, restore))]
        init["env"] += [{"name": k, "value": v} for k, v in {**backup.restore_env(target, DB),
                                                              **store_keys(store)}.items()]
        if volume is not None:
            init["volumeMounts"].append({"name": "backup", "mountPath": BACKUP_MOUNT})
            (self.rootfs / BACKUP_MOUNT.lstrip("/")).mkdir(exist_ok=True)
            for pod in self.instances:
                pod.volumes["backup"] = volume

    def serving(self) -> LoopDriver:
        """The clustering loop on the restored member, until it is a Healthy primary."""
        loop = LoopDriver(self, dataclasses.replace(Policy.from_spec(self.spec), probe_interval=0.5))
        loop.run_until(lambda r: r.state == "Healthy" and r.primary == f"{DB}-0", 60, "the restored primary")
        return loop


def volume_dir() -> Path:
    """A directory standing for the PersistentVolumeClaim target (writable by the job's uid)."""
    work = CACHE / "work"
    work.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="backup-volume-", dir=work))
    path.chmod(0o777)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
