"""The Kubernetes objects of a ReplicatedDatabase's scheduled backups (pure builders).

- the CronJob `<db>-backup`: at spec.backup.schedule a Job whose one container, the database's
  own image, runs backup.backup_script (a copy of a replica, then the primary's binary logs);
- the CronJob `<db>-binlog` when spec.backup.binlogSchedule is set: only the binary logs
  (backup.binlog_script), so a point in time between two backups can be reached;
- the headless Service `<db>-backup-source`: the serving replicas (every member when there is only
  one), ready ones only. A headless name resolves to the members' own addresses, so the job talks
  to one replica for the whole copy (its MySQL clone and its `SELECT @@hostname`, or MariaDB's
  stream from the backup container's port, which no other Service carries).

A run's report is its container's termination message (Kubernetes: "Customizing the termination
message"): the manifest JSON (backup.Manifest) on success, written to /dev/termination-log by
the script; on failure the log's last lines (terminationMessagePolicy FallbackToLogsOnError).
The job runs as the database's pods do: uid/gid 999, no privilege, a read-only root filesystem,
emptyDirs for what it writes (/tmp: a MySQL clone needs room for the data there).
"""

from __future__ import annotations

from typing import Any

from hakeeper.api.common import parse_duration
from hakeeper.api.meta import (
    BACKUP_COMPONENT,
    BINLOG_COMPONENT,
    COMPONENT_LABEL,
    DATABASE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    ROLE_LABEL,
)
from hakeeper.api.replicateddatabase import DEFAULT_IMAGE, BackupSpec, BackupTarget, ReplicatedDatabaseSpec
from hakeeper.replicateddatabase import backup, objects

CRONJOB_NAME_MAX = 52
"""A CronJob's name is at most 52 characters: the Jobs it makes append 11 (Kubernetes
documentation, "CronJob", "Writing a CronJob spec")."""
VOLUME_MOUNT = "/backup"
"""Where a volume target's PersistentVolumeClaim is mounted in the job."""
CA_DIR = "/etc/hakeeper/backup-ca"
CA_FILE_NAME = "ca.crt"
CA_FILE = f"{CA_DIR}/{CA_FILE_NAME}"
"""The S3 endpoint's CA bundle (spec.backup.target.s3.caSecret's key), mounted from its Secret."""
TERMINATION_LOG = "/dev/termination-log"
HISTORY_LIMIT = 3
"""Finished Jobs kept per CronJob and outcome: the operator reads their reports from them."""
STARTING_DEADLINE_SECONDS = 300
"""A run that could not start within this of its time is skipped (the next one comes), rather
than many missed runs starting at once after an outage of the controller manager."""
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set by the Job controller on its pods (Kubernetes 1.27 and later)."""


def names(db: str) -> dict[str, str]:
    return {"backup": f"{db}-backup", "binlog": f"{db}-binlog", "source": f"{db}-backup-source"}


def labels(db: str, component: str) -> dict[str, str]:
    """The labels of a backup object. Not the members' INSTANCE_LABEL: the members' Services, their
    PodDisruptionBudget and the StatefulSet select on it, and a job's pod is none of theirs."""
    return {NAME_LABEL: "mariadb", COMPONENT_LABEL: component, MANAGED_BY_LABEL: MANAGED_BY, DATABASE_LABEL: db}


def run_selector(db: str) -> str:
    """The label selector of the database's backup and binary log Jobs (and their pods)."""
    return f"{DATABASE_LABEL}={db},{COMPONENT_LABEL} in ({BACKUP_COMPONENT},{BINLOG_COMPONENT})"


def source_host(db: str, namespace: str) -> str:
    return f"{names(db)['source']}.{namespace}.svc"


def primary_host(db: str, namespace: str) -> str:
    return f"{objects.names(db)['primary']}.{namespace}.svc"


def target_of(target: BackupTarget, ca_file: str = CA_FILE) -> backup.Target:
    """The store as the scripts name it (the CA, when caSecret is set, mounted at `ca_file`; a
    volume at VOLUME_MOUNT); backup.BackupError for a value the CRD let through that the scripts
    refuse (none known: the CRD's patterns are the same)."""
    if target.s3 is not None:
        s3 = target.s3
        return backup.Target("s3", prefix=target.prefix, bucket=s3.bucket, endpoint=s3.endpoint, region=s3.region,
                             ca_file=ca_file if s3.ca_secret is not None else "")
    return backup.Target("volume", prefix=target.prefix, path=VOLUME_MOUNT)


def source_service(db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> dict[str, Any]:
    """`<db>-backup-source`: headless, the serving replicas (the one member when replicas is 1:
    a lone primary is the only copy there is); ready addresses only."""
    select = dict(objects.selector(db))
    if spec.replicas > 1:
        select[ROLE_LABEL] = "replica"
    ports = [{"name": "mysql", "port": 3306, "targetPort": "mysql"}]
    if spec.flavor == "mariadb":
        ports.append({"name": "backup", "port": objects.BACKUP_PORT, "targetPort": "backup"})
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": names(db)["source"], "namespace": namespace, "labels": labels(db, BACKUP_COMPONENT)},
            "spec": {"clusterIP": "None", "selector": select, "ports": ports}}


def _job_script(flavor: str, component: str) -> str:
    if component == BACKUP_COMPONENT:
        # the manifest becomes the termination message: the operator's report of the run. Last,
        # so that a run whose retention or binary logs failed reports its log instead
        return backup.backup_script(flavor) + f'cat "$work/{backup.MANIFEST}" > {TERMINATION_LOG}\n'
    return (f"set -eu\nexport TZ=UTC\nwork=$(mktemp -d {objects.TMP_DIR}/binlog.XXXXXX)\n"
            "trap 'rm -rf \"$work\"' EXIT\n" + backup.binlog_script(flavor))


def _secret_ref(name: str, variable: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def store_access(target: BackupTarget, ca_dir: str = CA_DIR, prefix: str = "", read_only: bool = False) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """What a container needs to reach the store `target`, as (env, volumes, volumeMounts): an S3
    store's access keys as secretKeyRefs (never in a script or an object's spec), its caSecret's
    key mounted as <ca_dir>/ca.crt (what target_of names), or a volume target's claim mounted at
    VOLUME_MOUNT (read only for a restore). Volume names start with `prefix`, for a pod that has
    volumes of its own (the members')."""
    env: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if target.s3 is not None:
        keys = target.s3.credentials
        env += [_secret_ref(keys.name, "RCLONE_CONFIG_STORE_ACCESS_KEY_ID", keys.access_key_id_key),
                _secret_ref(keys.name, "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY", keys.secret_access_key_key)]
        if target.s3.ca_secret is not None:
            ca = target.s3.ca_secret
            mounts.append({"name": f"{prefix}ca", "mountPath": ca_dir, "readOnly": True})
            volumes.append({"name": f"{prefix}ca", "secret": {"secretName": ca.name,
                                                              "items": [{"key": ca.key, "path": CA_FILE_NAME}]}})
    else:
        assert target.volume is not None
        read = {"readOnly": True} if read_only else {}
        mounts.append({"name": f"{prefix}store", "mountPath": VOLUME_MOUNT, **read})
        volumes.append({"name": f"{prefix}store", "persistentVolumeClaim": {"claimName": target.volume.claim_name,
                                                                             **read}})
    return env, volumes, mounts


def _pod(db: str, namespace: str, spec: ReplicatedDatabaseSpec, secret: str, component: str) -> dict[str, Any]:
    assert spec.backup is not None
    target = spec.backup.target
    env = backup.job_env(target_of(target), db, source_host(db, namespace), primary_host(db, namespace),
                         spec.backup.retention.keep)
    secrets = [_secret_ref(secret, "REPLICATION_PASSWORD", "replication-password")]
    if spec.flavor == "mysql":
        secrets.append(_secret_ref(secret, "OPERATOR_PASSWORD", "operator-password"))  # the clone's account
    mounts = [{"name": "tmp", "mountPath": objects.TMP_DIR}, {"name": "conf", "mountPath": objects.CONF_DIR},
              {"name": "base-conf", "mountPath": objects.BASE_CONF_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}, {"name": "conf", "emptyDir": {}},
                                     {"name": "base-conf", "configMap": {"name": objects.names(db)["config"]}}]
    keys, store_volumes, store_mounts = store_access(target)
    secrets += keys
    volumes += store_volumes
    mounts += store_mounts
    container = {
        "name": component, "image": spec.image or DEFAULT_IMAGE[spec.flavor],
        "command": ["sh", "-c", _job_script(spec.flavor, component)],
        "env": [*({"name": k, "value": v} for k, v in sorted(env.items())), *secrets],
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(objects.CONTAINER_SECURITY),
    }
    return {"metadata": {"labels": labels(db, component)},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                     "securityContext": dict(objects.POD_SECURITY), "containers": [container], "volumes": volumes}}


def cronjob(db: str, namespace: str, spec: ReplicatedDatabaseSpec, secret: str, component: str,
            suspend: bool = False) -> dict[str, Any]:
    """The CronJob of `component` (BACKUP_COMPONENT at spec.backup.schedule, BINLOG_COMPONENT at
    its binlogSchedule); `suspend` on top of spec.backup.suspend (a configuration found invalid).
    One run at a time (Forbid), no retry (backoffLimit 0: the next scheduled run is the retry,
    and a stream cannot resume), stopped after spec.backup.activeDeadline.

    Raises backup.BackupError for a name the scripts refuse."""
    assert spec.backup is not None
    b: BackupSpec = spec.backup
    schedule = b.schedule if component == BACKUP_COMPONENT else b.binlog_schedule
    assert schedule is not None
    name = names(db)["backup" if component == BACKUP_COMPONENT else "binlog"]
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(db, component)},
        "spec": {
            "schedule": schedule, **({"timeZone": b.time_zone} if b.time_zone else {}),
            "concurrencyPolicy": "Forbid", "suspend": b.suspend or suspend,
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": HISTORY_LIMIT, "failedJobsHistoryLimit": HISTORY_LIMIT,
            "jobTemplate": {
                "metadata": {"labels": labels(db, component)},
                "spec": {"backoffLimit": 0, "activeDeadlineSeconds": max(1, int(parse_duration(b.active_deadline))),
                         "template": _pod(db, namespace, spec, secret, component)},
            },
        },
    }


def desired(db: str, namespace: str, spec: ReplicatedDatabaseSpec, secret: str,
            suspend: bool = False) -> list[dict[str, Any]]:
    """Every backup object spec.backup asks for (none without it): the source Service, the
    backup CronJob, the binary log CronJob when binlogSchedule is set."""
    if spec.backup is None:
        return []
    out = [source_service(db, namespace, spec), cronjob(db, namespace, spec, secret, BACKUP_COMPONENT, suspend)]
    if spec.backup.binlog_schedule:
        out.append(cronjob(db, namespace, spec, secret, BINLOG_COMPONENT, suspend))
    return out


def all_names(db: str, namespace: str) -> list[dict[str, Any]]:
    """Stubs (kind, namespace, name) of every object `desired` may make: what goes when
    spec.backup is removed or binlogSchedule unset."""
    n = names(db)
    return [{"kind": kind, "metadata": {"namespace": namespace, "name": name}}
            for kind, name in (("CronJob", n["backup"]), ("CronJob", n["binlog"]), ("Service", n["source"]))]


def config_problem(db: str, spec: BackupSpec, store_secret: dict[str, Any] | None,
                   claim: dict[str, Any] | None) -> str | None:
    """Why spec.backup cannot run, for BackupConfigInvalid (None: it can): the database's name
    too long for a CronJob's, the store's Secret (as read: None when absent) or one of its keys
    (or the CA's) missing, the claim of a volume target absent."""
    longest = f"{db}-backup"
    if len(longest) > CRONJOB_NAME_MAX:
        return (f"the CronJob {longest} would have {len(longest)} characters, more than Kubernetes' "
                f"{CRONJOB_NAME_MAX}: a database with backups needs a name of at most {CRONJOB_NAME_MAX - 7}")
    s3 = spec.target.s3
    if s3 is not None:
        if store_secret is None:
            return f"the store's Secret {s3.credentials.name} does not exist"
        data = {**(store_secret.get("data") or {}), **(store_secret.get("stringData") or {})}
        wanted = [s3.credentials.access_key_id_key, s3.credentials.secret_access_key_key]
        missing = [key for key in wanted if not data.get(key)]
        if missing:
            return f"the store's Secret {s3.credentials.name} has no key {', '.join(missing)}"
    elif spec.target.volume is not None and claim is None:
        return f"the PersistentVolumeClaim {spec.target.volume.claim_name} does not exist"
    try:
        target_of(spec.target).root(db)
    except backup.BackupError as error:
        return str(error)
    return None


def ca_problem(spec: BackupSpec, ca_secret: dict[str, Any] | None) -> str | None:
    """Why the S3 endpoint's CA cannot be mounted (its Secret or key missing), else None."""
    s3 = spec.target.s3
    if s3 is None or s3.ca_secret is None:
        return None
    if ca_secret is None:
        return f"the CA's Secret {s3.ca_secret.name} does not exist"
    if not (ca_secret.get("data") or {}).get(s3.ca_secret.key):
        return f"the CA's Secret {s3.ca_secret.name} has no key {s3.ca_secret.key}"
    return None
