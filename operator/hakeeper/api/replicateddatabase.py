"""ReplicatedDatabase: a MySQL or MariaDB primary with replicas and automatic failover."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from hakeeper.api.common import BaseStatus, Duration, Model, ObjectName, ResourceRequirements, StatusModel, cel

# Built from images/mysql and images/mariadb (Debian's mysql-server 9.x and mariadb-server 10.11);
# any image with the flavor's server binaries and a non-root mysql user with uid/gid 999 works.
DEFAULT_IMAGE = {"mysql": "ghcr.io/hakeeper/mysql:9.7", "mariadb": "ghcr.io/hakeeper/mariadb:10.11"}
# my.cnf settings the operator owns: letting a user override them would break replication.
OPERATOR_OWNED_SETTINGS = (
    "server_id", "server-id", "gtid_mode", "gtid-mode", "enforce_gtid_consistency",
    "enforce-gtid-consistency", "read_only", "read-only", "super_read_only", "super-read-only",
    "log_bin", "log-bin", "gtid_domain_id", "gtid-domain-id", "port", "bind_address", "bind-address",
)


class Credentials(Model):
    secret_name: ObjectName | None = None
    """Secret with keys root-password, replication-password, operator-password; generated
    as <name>-credentials when not given."""


class Storage(Model):
    size: str = Field(default="10Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
    storage_class_name: str | None = Field(default=None, max_length=253)


class SemiSync(Model):
    """Semi-synchronous replication: a commit is acknowledged only once replicas have it."""

    enabled: bool = True
    wait_for_replica_count: int = Field(default=1, ge=1, le=8)
    timeout: Duration = "10s"
    """After this long without an acknowledgement the primary falls back to asynchronous."""


class Failover(Model):
    enabled: bool = True
    probe_interval: Duration = "1s"
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Consecutive failed probes of the primary before it is declared failed."""
    max_lag_seconds: int = Field(default=30, ge=0, le=86400)
    """A replica lagging more than this is not a failover candidate."""
    anti_flap_window: Duration = "5m"
    """No second automatic failover within this time after one."""


class Switchover(Model):
    """A planned change of primary, with no lost write."""

    target_member: int | None = Field(default=None, ge=0, le=8)
    """Ordinal of the member to promote (also settable by the annotation hakeeper.io/switchover-to)."""


class DatabaseService(Model):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(default=3306, ge=1, le=65535)


class ReplicatedDatabaseSpec(Model):
    flavor: Literal["mysql", "mariadb"] = "mysql"
    image: str | None = Field(default=None, max_length=512)
    """Server image (default ghcr.io/hakeeper/mysql:9.7 or ghcr.io/hakeeper/mariadb:10.11). It must
    have mysqld (mysql) or mariadbd and mariadb-install-db (mariadb), and sh; the pod runs as uid/gid 999."""
    replicas: int = Field(default=3, ge=1, le=9)
    """Members, the primary included."""
    credentials: Credentials = Field(default_factory=Credentials)
    storage: Storage = Field(default_factory=Storage)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    semi_sync: SemiSync = Field(default_factory=SemiSync)
    failover: Failover = Field(default_factory=Failover)
    switchover: Switchover = Field(default_factory=Switchover)
    service: DatabaseService = Field(default_factory=DatabaseService)
    config: dict[str, str] = Field(default_factory=dict, max_length=128)
    """Extra [mysqld] settings for my.cnf."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!self.semiSync.enabled || self.replicas == 1 || self.semiSync.waitForReplicaCount < self.replicas",
                    "semiSync.waitForReplicaCount must be smaller than replicas: only replicas acknowledge writes"),
                cel("self.flavor != 'mariadb' || !self.semiSync.enabled || self.semiSync.waitForReplicaCount == 1",
                    "with flavor mariadb semi-sync waits for one replica: waitForReplicaCount must be 1"),
                cel("!has(self.switchover.targetMember) || self.switchover.targetMember < self.replicas",
                    "switchover.targetMember must name an existing member (0 to replicas-1)"),
                cel("!self.config.exists(k, k in " + repr(list(OPERATOR_OWNED_SETTINGS)) + ")",
                    "config may not set server_id, gtid_mode, read_only, log_bin, port or bind_address: "
                    "the operator manages them"),
                cel("duration(self.failover.antiFlapWindow) >= duration(self.failover.probeInterval)",
                    "failover.antiFlapWindow must be at least one probeInterval"),
            ]
        }
    )


class MemberStatus(StatusModel):
    name: str
    role: Literal["primary", "replica", "fenced", "unknown"] = "unknown"
    reachable: bool = False
    read_only: bool | None = None
    lag_seconds: float | None = None
    gtid: str | None = None
    errant: bool = False
    message: str | None = None


class HistoryEntry(StatusModel):
    time: str
    kind: Literal["failover", "switchover"]
    from_member: str | None = Field(default=None, alias="from")
    to_member: str = Field(alias="to")
    reason: str
    duration_seconds: float | None = None


class ReplicatedDatabaseStatus(BaseStatus):
    phase: Literal["Initializing", "Healthy", "Degraded", "Failed", "Lost", "Switching"] | None = None
    current_primary: str | None = None
    ready_members: int = 0
    members: list[MemberStatus] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=20)
    """The last failovers and switchovers, newest first."""
    last_failover_time: str | None = None
    handled_switchover: str | None = None
    """The switchover request (annotation value, or spec generation and target) already
    carried out: it is not repeated after a later failover."""
    loop_memory: str | None = None
    """The clustering loop's memory (JSON): probe failures, last failover, lease; a restarted
    operator resumes from it."""
