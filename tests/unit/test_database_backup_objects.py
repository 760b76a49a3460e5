"""The backup CronJobs and the Service naming the replica they copy (replicateddatabase.backup_objects):
what spec.backup renders to, and why a configuration is refused before anything runs."""

from __future__ import annotations

import subprocess

import pytest

from hakeeper.api.meta import BACKUP_COMPONENT, ROLE_LABEL
from hakeeper.api.replicateddatabase import DEFAULT_IMAGE, BackupSpec, ReplicatedDatabaseSpec
from hakeeper.replicateddatabase import backup, backup_objects, objects

S3 = {"s3": {"endpoint": "https://store.example:8333", "bucket": "backups", "credentials": {"name": "store"}},
      "prefix": "prod"}


def spec(flavor: str = "mariadb", replicas: int = 3, **backup_spec) -> ReplicatedDatabaseSpec:
    return ReplicatedDatabaseSpec.model_validate({"flavor": flavor, "replicas": replicas, "backup": {
        "schedule": "0 3 * * *", "target": S3, **backup_spec}})


def job_pod(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return all(pod_labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_the_backup_cronjob_runs_the_backup_script_in_the_database_image_once_at_a_time(flavor: str) -> None:
    cronjob = backup_objects.cronjob("db", "ns", spec(flavor), "db-credentials", BACKUP_COMPONENT)
    assert cronjob["metadata"]["name"] == "db-backup" and cronjob["spec"]["schedule"] == "0 3 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid" and cronjob["spec"]["suspend"] is False
    assert cronjob["spec"]["successfulJobsHistoryLimit"] == cronjob["spec"]["failedJobsHistoryLimit"] == 3
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 6 * 3600
    pod = job_pod(cronjob)
    (container,) = pod["containers"]
    assert container["image"] == DEFAULT_IMAGE[flavor] and pod["restartPolicy"] == "Never"
    assert container["command"][:2] == ["sh", "-c"]
    assert container["command"][2].startswith(backup.backup_script(flavor))
    subprocess.run(["dash", "-n", "-c", container["command"][2]], check=True)
    # the report: the manifest, written last; the log's tail when the run fails
    assert container["command"][2].endswith('cat "$work/manifest.json" > /dev/termination-log\n')
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_the_job_copies_a_replica_through_the_source_service_and_reads_the_primary_s_binary_logs(flavor) -> None:
    container = job_pod(backup_objects.cronjob("db", "ns", spec(flavor), "db-credentials",
                                               BACKUP_COMPONENT))["containers"][0]
    values = env(container)
    assert values["HK_SOURCE"] == "db-backup-source.ns.svc" and values["HK_PRIMARY"] == "db-primary.ns.svc"
    assert values["HK_STORE_ROOT"] == "store:backups/prod/db" and values["HK_KEEP"] == "7"
    assert values["RCLONE_CONFIG_STORE_ENDPOINT"] == "https://store.example:8333"
    # every secret a Secret's key, never a value in the object
    assert values["REPLICATION_PASSWORD"] == {"secretKeyRef": {"name": "db-credentials", "key": "replication-password"}}
    assert values["RCLONE_CONFIG_STORE_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "store", "key": "access-key-id"}}
    assert values["RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "store", "key": "secret-access-key"}}
    # MySQL clones as the operator's account; MariaDB's stream needs the replication password only
    assert ("OPERATOR_PASSWORD" in values) == (flavor == "mysql")
    assert "ROOT_PASSWORD" not in values


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_the_source_service_resolves_to_serving_replicas_and_carries_mariadb_s_stream_port(flavor: str) -> None:
    service = backup_objects.source_service("db", "ns", spec(flavor))
    assert service["metadata"]["name"] == "db-backup-source" and service["spec"]["clusterIP"] == "None"
    assert not service["spec"].get("publishNotReadyAddresses")
    template = objects.statefulset("db", "ns", spec(flavor))["spec"]["template"]
    member = template["metadata"]["labels"]
    assert selects(service["spec"]["selector"], {**member, ROLE_LABEL: "replica"})
    assert not selects(service["spec"]["selector"], {**member, ROLE_LABEL: "primary"})
    assert not selects(service["spec"]["selector"], member)  # a replica that stopped serving
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    member_ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    if flavor == "mariadb":
        assert ports == {"mysql": 3306, "backup": objects.BACKUP_PORT} and "backup" in member_ports
    else:
        assert ports == {"mysql": 3306}
    # one member: the lone primary is the only copy there is
    lone = backup_objects.source_service("db", "ns", spec(flavor, replicas=1))
    assert selects(lone["spec"]["selector"], {**member, ROLE_LABEL: "primary"})


def test_a_job_pod_is_no_member_of_the_database_s_services_budget_or_statefulset() -> None:
    s = spec()
    pod_labels = backup_objects.cronjob("db", "ns", s, "c", BACKUP_COMPONENT)["spec"]["jobTemplate"]["spec"][
        "template"]["metadata"]["labels"]
    selectors = [objects.statefulset("db", "ns", s)["spec"]["selector"]["matchLabels"],
                 *(svc["spec"]["selector"] for svc in objects.services("db", "ns", s)),
                 backup_objects.source_service("db", "ns", s)["spec"]["selector"]]
    for selector in selectors:
        assert not selects(selector, pod_labels), selector


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_the_job_runs_as_the_database_s_pods_without_privilege(flavor: str) -> None:
    pod = job_pod(backup_objects.cronjob("db", "ns", spec(flavor), "c", BACKUP_COMPONENT))
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == objects.SERVER_UID
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    security = pod["containers"][0]["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    # what it writes: /tmp (the clone's scratch), my.cnf's !includedir; the database's my.cnf read-only
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert set(mounts) == {objects.TMP_DIR, objects.CONF_DIR, objects.BASE_CONF_DIR}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["base-conf"]["configMap"] == {"name": "db-config"}


def test_a_volume_target_mounts_its_claim_and_a_ca_is_a_mounted_secret_key() -> None:
    on_claim = spec(target={"volume": {"claimName": "backups"}})
    pod = job_pod(backup_objects.cronjob("db", "ns", on_claim, "c", BACKUP_COMPONENT))
    assert {"name": "store", "persistentVolumeClaim": {"claimName": "backups"}} in pod["volumes"]
    assert {"name": "store", "mountPath": "/backup"} in pod["containers"][0]["volumeMounts"]
    values = env(pod["containers"][0])
    assert values["HK_STORE_ROOT"] == "store:/backup/db" and values["RCLONE_CONFIG_STORE_TYPE"] == "local"
    assert not any(name.startswith("RCLONE_CONFIG_STORE_ACCESS") for name in values)

    tls = spec(target={**S3, "s3": {**S3["s3"], "caSecret": {"name": "store-ca", "key": "bundle.pem"}}})
    pod = job_pod(backup_objects.cronjob("db", "ns", tls, "c", BACKUP_COMPONENT))
    assert {"name": "ca", "secret": {"secretName": "store-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}} \
        in pod["volumes"]
    assert {"name": "ca", "mountPath": backup_objects.CA_DIR, "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert env(pod["containers"][0])["RCLONE_CA_CERT"] == backup_objects.CA_FILE


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_a_binlog_schedule_adds_a_cronjob_that_copies_only_the_binary_logs(flavor: str) -> None:
    assert [o["metadata"]["name"] for o in backup_objects.desired("db", "ns", spec(flavor), "c")] == [
        "db-backup-source", "db-backup"]
    s = spec(flavor, binlogSchedule="*/5 * * * *", timeZone="Europe/Berlin", suspend=True)
    source, main, binlog = backup_objects.desired("db", "ns", s, "c")
    assert binlog["metadata"]["name"] == "db-binlog" and binlog["spec"]["schedule"] == "*/5 * * * *"
    assert binlog["spec"]["timeZone"] == main["spec"]["timeZone"] == "Europe/Berlin"
    assert binlog["spec"]["suspend"] is main["spec"]["suspend"] is True
    script = job_pod(binlog)["containers"][0]["command"][2]
    subprocess.run(["dash", "-n", "-c", script], check=True)
    assert backup.binlog_script(flavor) in script
    assert "mariabackup" not in script and "CLONE INSTANCE" not in script and "termination-log" not in script
    assert backup_objects.desired("db", "ns", ReplicatedDatabaseSpec.model_validate({"flavor": flavor}), "c") == []


def test_a_configuration_that_cannot_run_is_named() -> None:
    b = spec().backup
    assert b is not None
    complete = {"data": {"access-key-id": "YQ==", "secret-access-key": "Yg=="}}
    assert backup_objects.config_problem("db", b, complete, None) is None
    assert backup_objects.config_problem("db", b, None, None) == "the store's Secret store does not exist"
    assert backup_objects.config_problem("db", b, {"data": {"access-key-id": "YQ=="}}, None) == (
        "the store's Secret store has no key secret-access-key")
    on_claim = BackupSpec.model_validate({"schedule": "@daily", "target": {"volume": {"claimName": "backups"}}})
    assert backup_objects.config_problem("db", on_claim, None, None) == (
        "the PersistentVolumeClaim backups does not exist")
    assert backup_objects.config_problem("db", on_claim, None, {"metadata": {"name": "backups"}}) is None
    long_name = "d" * 50
    assert "at most 45" in (backup_objects.config_problem(long_name, b, complete, None) or "")
    tls = BackupSpec.model_validate({"schedule": "@daily", "target": {
        **S3, "s3": {**S3["s3"], "caSecret": {"name": "ca", "key": "ca.crt"}}}})
    assert backup_objects.ca_problem(tls, None) == "the CA's Secret ca does not exist"
    assert backup_objects.ca_problem(tls, {"data": {"other": "eA=="}}) == "the CA's Secret ca has no key ca.crt"
    assert backup_objects.ca_problem(tls, {"data": {"ca.crt": "eA=="}}) is None
