"""ReplicatedDatabase: a MySQL or MariaDB primary with replicas and automatic failover."""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import ConfigDict, Field

from hakeeper.api.common import (
    BaseStatus,
    Model,
    ObjectName,
    PositiveDuration,
    ResourceRequirements,
    SecretKeyRef,
    StatusModel,
    allowed_characters,
    cel,
)

# Built from images/mysql and images/mariadb (Debian's mysql-server 9.x and mariadb-server 10.11);
# any image with the flavor's server binaries and a non-root mysql user with uid/gid 999 works.
DEFAULT_IMAGE = {"mysql": "ghcr.io/hakeeper/mysql:9.7", "mariadb": "ghcr.io/hakeeper/mariadb:10.11"}
# my.cnf settings the operator owns: letting a user override them would break replication,
# durability or the self-fence. Written as the server reads option names: case-insensitive, `-`
# and `_` alike, optionally prefixed `loose-` and one of `skip-`/`disable-`/`enable-` (MySQL 8.4
# Reference Manual, 6.2.2.2 "Using Options on the Command Line" and 6.2.2.4 "Program Option
# Modifiers"; MariaDB's "mariadbd Options" page says the same), so `Skip-Log-Bin` and
# `loose_read-only` are refused like `log_bin` and `read_only`.
OPERATOR_OWNED_SETTINGS = (
    "server_id", "server_uuid", "gtid_mode", "enforce_gtid_consistency", "read_only", "super_read_only",
    "log_bin", "log_bin_basename", "log_replica_updates", "log_slave_updates", "sync_binlog", "binlog_format",
    "innodb_flush_log_at_trx_commit", "gtid_domain_id", "gtid_strict_mode", "port", "bind_address",
    "socket", "datadir", "init_file", "event_scheduler", "skip_slave_start", "skip_replica_start",
    "relay_log", "relay_log_recovery", "init_rpl_role", "report_host", "slave_net_timeout",
    "replica_net_timeout", "plugin_load_add", "plugin_load",
)
OWNED_SETTING_PATTERNS = ("rpl_semi_sync_.*",)
"""Families of operator-owned settings (the semi-sync plugins' variables)."""
OWNED_SETTING_REGEX = ("^(loose_)?((skip|disable|enable)_)?(" + "|".join(OPERATOR_OWNED_SETTINGS)
                       + "|" + "|".join(OWNED_SETTING_PATTERNS) + ")$")
"""Matches an option name, lower-cased with `-` as `_`, that the operator owns."""
CONFIG_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
"""An option name as my.cnf takes it: no space, `=`, `#`, bracket or newline."""
CONFIG_VALUE_PATTERN = r'^[ !"$-~]*$'
"""An option value as a my.cnf line carries it: printable ASCII (space to `~`) but `#`, which
starts a comment anywhere on an option file's line (MySQL 8.4 Reference Manual, 6.2.2.2 "Using
Option Files"); no line break or other control character. Quotes and backslash escapes keep
the meaning the server gives them inside one value."""


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
    timeout: PositiveDuration = "10s"
    """After this long without an acknowledgement the primary falls back to asynchronous
    (longer than 0s; at least 3s with durability Lossless)."""


class Failover(Model):
    enabled: bool = True
    probe_interval: PositiveDuration = "1s"
    """Time between two probes of every member (longer than 0s)."""
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Consecutive failed probes of the primary before it is declared failed."""
    max_lag_seconds: int = Field(default=30, ge=0, le=86400)
    """A replica lagging more than this is not a failover candidate."""
    anti_flap_window: PositiveDuration = "5m"
    """No second automatic failover within this time after one (at least one probeInterval)."""


class Switchover(Model):
    """A planned change of primary, with no lost write."""

    target_member: int | None = Field(default=None, ge=0, le=8)
    """Ordinal of the member to promote (also settable by the annotation hakeeper.io/switchover-to)."""


class DatabaseService(Model):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(default=3306, ge=1, le=65535)


def _cron_field(value: str) -> str:
    # one field: *, a value or a range, each with an optional /step, comma-separated
    item = rf"(\*|\?|({value})(-({value}))?)(/[0-9]{{1,2}})?"
    return rf"{item}(,{item})*"


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
CRON_PATTERN = (r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
                + r"\s+".join(_cron_field(v) for v in (
                    "[0-5]?[0-9]", "[01]?[0-9]|2[0-3]", "0?[1-9]|[12][0-9]|3[01]",
                    f"0?[1-9]|1[0-2]|{_MONTHS}", f"[0-7]|{_DAYS}"))
                + r")$")
"""A CronJob schedule as Kubernetes reads it (the five fields minute hour day-of-month month
day-of-week, with *, ranges, lists, steps, month and day names, or a @daily-style macro:
Kubernetes documentation, "CronJob", section "Schedule syntax"), each value within its field's
range, so that `61 * * * *` is refused at apply rather than when the CronJob is written."""
S3_ENDPOINT_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$"
S3_BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
"""An S3 bucket name (AWS S3 User Guide, "Bucket naming rules")."""
STORE_PATH_PATTERN = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
"""A prefix inside the store: segments of letters, digits, `.` `_` `-`; no `..` (CEL refuses it)."""
BACKUP_ID_PATTERN = r"^[0-9]{8}T[0-9]{6}Z$"
"""A backup's name: the UTC time its run started, e.g. 20261130T030000Z (sorts by age)."""
RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
MARIADB_GTID_POSITION_PATTERN = r"^[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,20}(,[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,20})*$"
"""A MariaDB GTID position: domain-server_id-seq_no, one per domain, comma separated (MariaDB
documentation, "Global Transaction ID", section "gtid_binlog_pos")."""
_MYSQL_UUID = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_MYSQL_GTID_ITEM = _MYSQL_UUID + "(:([a-zA-Z_][a-zA-Z0-9_]{0,31}|[0-9]{1,20}(-[0-9]{1,20})?))+"
MYSQL_GTID_SET_PATTERN = f"^{_MYSQL_GTID_ITEM}(,{_MYSQL_GTID_ITEM})*$"
"""A MySQL GTID set: source_uuid[:tag]:interval[:interval...], comma separated (MySQL 9.7
Reference Manual 19.1.3.1 "GTID Format and Storage", "GTID Sets")."""


class S3Credentials(Model):
    """The Secret (in the database's namespace) holding the store's access key pair."""

    name: ObjectName
    access_key_id_key: str = Field(default="access-key-id", min_length=1, max_length=253)
    secret_access_key_key: str = Field(default="secret-access-key", min_length=1, max_length=253)


class S3Target(Model):
    """An S3-compatible object store (AWS S3, SeaweedFS, MinIO, Ceph RGW ...), path-style."""

    endpoint: str = Field(pattern=S3_ENDPOINT_PATTERN, max_length=255, json_schema_extra=allowed_characters(
        S3_ENDPOINT_PATTERN, "endpoint must be http(s)://host[:port], nothing after the host (the bucket and prefix "
        "are fields of their own)"))
    """http(s)://host[:port]. https checks the server's certificate against caSecret, else the system's CAs."""
    bucket: str = Field(pattern=S3_BUCKET_PATTERN, max_length=63)
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,32}$")
    credentials: S3Credentials
    ca_secret: SecretKeyRef | None = None
    """A CA bundle (PEM) the endpoint's certificate is checked against (TLS with a private CA)."""


class VolumeTarget(Model):
    """A PersistentVolumeClaim in the database's namespace, mounted in the backup job (and in a
    restoring member): ReadWriteMany, or ReadWriteOnce on a single node."""

    claim_name: ObjectName


class BackupTarget(Model):
    """Where backups are kept: exactly one of s3 and volume. Under it, backups of this database
    go to <prefix>/<database name>/ (base/<backup>/ and binlog/<member>/)."""

    s3: S3Target | None = None
    volume: VolumeTarget | None = None
    prefix: str = Field(default="", max_length=512, pattern=r"^$|" + STORE_PATH_PATTERN)

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        cel("has(self.s3) != has(self.volume)", "a backup target is exactly one of s3 and volume"),
        cel("!self.prefix.split('/').exists(p, p == '..')", "prefix may not hold a '..' segment"),
    ]})


class BackupRetention(Model):
    keep: int = Field(default=7, ge=0, le=10000)
    """Complete backups kept; older ones are deleted after a run succeeds (0: keep all). The
    binary logs stay: a point in time needs them from the oldest kept backup on."""


class BackupSpec(Model):
    """Scheduled cold backups: a CronJob copies a replica (never the primary unless it is the
    only member), then the primary's binary logs since the last run, to `target`."""

    schedule: str = Field(pattern=CRON_PATTERN, max_length=128, json_schema_extra=allowed_characters(
        CRON_PATTERN, "schedule must be a cron schedule: five fields (minute hour day-of-month month day-of-week, "
        "e.g. '0 3 * * *') with each value in its field's range, or a macro such as @daily"))
    binlog_schedule: str | None = Field(default=None, pattern=CRON_PATTERN, max_length=128,
                                        json_schema_extra=allowed_characters(
        CRON_PATTERN, "binlogSchedule must be a cron schedule (five fields, or a macro such as @hourly)"))
    """Copy the primary's binary logs on this schedule too, between backups (a point-in-time
    restore can reach up to the last copy). None: only at each backup."""
    time_zone: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$")
    """The schedule's time zone (a tz database name, e.g. Europe/Berlin); default the
    controller-manager's (usually UTC)."""
    target: BackupTarget
    retention: BackupRetention = Field(default_factory=BackupRetention)
    suspend: bool = False
    """No new run starts (the CronJob's suspend); backups already taken are kept."""
    active_deadline: PositiveDuration = "6h"
    """A run that takes longer is stopped and counts as failed."""


class RestoreSpec(Model):
    """Bootstrap this (new) database from a backup of another (or of an earlier one of the same
    name): the first member starts from the backup, brought to `pointInTime` by replaying the
    archived binary logs, then the others copy it as new members do. Only read when the
    database is created: a database that has data is never overwritten."""

    database: ObjectName
    """The name of the ReplicatedDatabase whose backups are read (its directory in the store)."""
    target: BackupTarget
    """The store those backups are in (as that database's spec.backup.target)."""
    backup: str | None = Field(default=None, pattern=BACKUP_ID_PATTERN)
    """A backup's name (status.backup.recent[].name); default the newest one finished by
    pointInTime (or the newest of all)."""
    point_in_time: str | None = Field(default=None, pattern=RFC3339_PATTERN, max_length=40)
    """Replay the binary logs up to this time (RFC 3339, e.g. 2026-11-30T10:15:00Z; events at or
    after it are not applied). None: the backup as it is. A time before the oldest backup is
    refused (Ready=False, reason RestoreFailed)."""
    gtid: str | None = Field(default=None, max_length=4096, pattern=f"({MARIADB_GTID_POSITION_PATTERN})|"
                                                                 f"({MYSQL_GTID_SET_PATTERN})")
    """Replay the binary logs up to and including this GTID instead of a time. MariaDB: a GTID
    position (e.g. 0-1-1042: domain 0 up to sequence 1042, one GTID per domain); MySQL: a GTID
    set (e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-1042): every transaction in it is applied,
    none outside it. The base is the newest backup whose GTID position the GTID includes; a GTID
    before the oldest backup, or one the stored binary logs do not reach, is refused
    (Ready=False, reason RestoreFailed). Exclusive with pointInTime."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        cel("!has(self.pointInTime) || !has(self.gtid)",
            "restore takes pointInTime or gtid, not both: replay stops at a time or at a GTID"),
    ]})


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
    config: dict[str, Annotated[str, Field(max_length=1024)]] = Field(default_factory=dict, max_length=128)
    """Extra [mysqld] settings for my.cnf: name (a letter, then letters, digits, _ . -) -> value
    (printable ASCII without `#`; no line break). Settings the operator owns (server ids, GTIDs,
    binary log, read_only, semi-sync, the event scheduler, init-file ...) are refused in any
    spelling."""
    durability: Literal["Lossless", "Available"] = "Lossless"
    """Lossless: a failover never promotes a member that may lack a write the primary acknowledged
    (the primary was last seen with semi-sync fallen back to asynchronous, or the members that may
    hold the only copy are unreachable); the database then reports Ready=False, reason
    FailoverRefused, until the old primary is back or a person names the member to promote in the
    annotation hakeeper.io/force-failover-to. Available: the most advanced replica is promoted
    anyway, and the possible loss is recorded in status.history."""
    backup: BackupSpec | None = None
    restore: RestoreSpec | None = None
    auto_reseed: bool = False
    """Rebuild a member from a healthy member's data, without asking, when it cannot rejoin by
    replication: it has errant transactions (kept on its volume as errant-<id>), or the binary
    logs it needs were purged. MySQL copies with the clone plugin, MariaDB with mariabackup.
    false: the ReseedRequired condition and an Event name the member and the annotation
    (hakeeper.io/reseed=<member>) that starts it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!self.semiSync.enabled || self.replicas == 1 || self.semiSync.waitForReplicaCount < self.replicas",
                    "semiSync.waitForReplicaCount must be smaller than replicas: only replicas acknowledge writes"),
                cel("self.flavor != 'mariadb' || !self.semiSync.enabled || self.semiSync.waitForReplicaCount == 1",
                    "with flavor mariadb semi-sync waits for one replica: waitForReplicaCount must be 1"),
                cel("!has(self.switchover.targetMember) || self.switchover.targetMember < self.replicas",
                    "switchover.targetMember must name an existing member (0 to replicas-1)"),
                {"rule": f"self.config.all(k, k.matches('{CONFIG_KEY_PATTERN}'))",
                 "messageExpression": "'config key ' + self.config.filter(k, !k.matches('"
                                      + CONFIG_KEY_PATTERN + "'))[0] + ' is not an option name "
                                      "(a letter, then letters, digits, _ . -)'",
                 "message": "a config key is not an option name"},
                {"rule": "self.config.all(k, !k.lowerAscii().replace('-', '_').matches('"
                         + OWNED_SETTING_REGEX + "'))",
                 "messageExpression": "'config may not set ' + self.config.filter(k, k.lowerAscii()"
                                      ".replace('-', '_').matches('" + OWNED_SETTING_REGEX + "'))[0] + "
                                      "': the operator manages it (server ids, GTIDs, the binary log, "
                                      "read_only, semi-sync, the event scheduler, init-file)'",
                 "message": "config may not set a setting the operator manages"},
                {"rule": "self.config.all(k, !self.config[k].contains('\\n') && !self.config[k]"
                         ".contains('\\r'))",
                 "messageExpression": "'config value of ' + self.config.filter(k, self.config[k]"
                                      ".contains('\\n') || self.config[k].contains('\\r'))[0] + "
                                      "' has a line break: my.cnf takes one line per setting'",
                 "message": "a config value has a line break"},
                {"rule": f"self.config.all(k, self.config[k].matches('{CONFIG_VALUE_PATTERN}'))",
                 "messageExpression": "'config value of ' + self.config.filter(k, !self.config[k].matches('"
                                      + CONFIG_VALUE_PATTERN + "'))[0] + ' may hold printable ASCII characters "
                                      "(space to ~) except #: my.cnf reads the rest of a line from # as a comment'",
                 "message": "a config value may hold printable ASCII characters (space to ~) except #"},
                cel("self.durability != 'Lossless' || self.replicas == 1 || self.semiSync.enabled",
                    "durability Lossless needs semiSync.enabled: without semi-sync a failover may lose writes "
                    "the primary acknowledged (set durability: Available to accept that)"),
                cel("self.durability != 'Lossless' || !self.semiSync.enabled || "
                    "duration(self.semiSync.timeout) >= duration('3s')",
                    "with durability Lossless semiSync.timeout must be at least 3s: a primary cut off from its "
                    "replicas kills a commit that waits for an acknowledgement (after 1 to 2 s) before the timeout "
                    "would let it through without one"),
                cel("duration(self.failover.antiFlapWindow) >= duration(self.failover.probeInterval)",
                    "failover.antiFlapWindow must be at least one probeInterval"),
                # a transition rule (oldSelf: updates only): spec.restore is read when the database is
                # created; added to a database that has data it would restore nothing, and say otherwise
                cel("!has(self.restore) || !has(self.restore.gtid) || "
                    "(self.flavor == 'mariadb') == self.restore.gtid.matches('^[0-9]+-[0-9]+-')",
                    "restore.gtid is in the flavor's form: a MariaDB GTID position (domain-server-sequence, "
                    "e.g. 0-1-1042) for flavor mariadb, a MySQL GTID set (uuid:interval, "
                    "e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-1042) for flavor mysql"),
                cel("has(self.restore) == has(oldSelf.restore) && "
                    "(!has(self.restore) || self.restore == oldSelf.restore)",
                    "restore is read only when the database is created: it cannot be added, changed or removed "
                    "afterwards (create a new database to restore into)"),
            ]
        }
    )


MemberRole: TypeAlias = Literal["primary", "replica", "fenced", "unknown"]
"""A member's role as the clustering loop sees it (MemberStatus.role)."""
Phase: TypeAlias = Literal["Initializing", "Healthy", "Degraded", "Failed", "Lost", "Switching"]
"""The cluster's state as the clustering loop classified it (see replicateddatabase.clustering.classify)."""


class MemberStatus(StatusModel):
    """One member (pod and server) as the last probe saw it."""

    name: str
    role: MemberRole = "unknown"
    """fenced: a writable member that is not the primary, made read-only; unknown: not reachable."""
    reachable: bool = False
    read_only: bool | None = None
    lag_seconds: float | None = None
    """How far the member's applied transactions are behind the primary's."""
    gtid: str | None = None
    """Its executed GTID set."""
    errant: bool = False
    """It has transactions the primary lacks: it stays out of the cluster until re-seeded."""
    transactions_behind: int | None = None
    """Transactions the primary has that this member has not applied (the GTID distance)."""
    semi_sync_active: bool | None = None
    """The primary only: whether it waits for replica acknowledgements (false: fallen back to async)."""
    serving: bool = False
    """A replica in the -replicas Service: reachable, both replication threads running, lag
    within failover.maxLagSeconds, no errant transaction."""
    message: str | None = None
    """What is wrong with it, if anything."""
    reseed: str | None = None
    """Why it cannot rejoin by replication and must be rebuilt from another member's data."""


class ReseedStatus(StatusModel):
    """A member being rebuilt from a donor's data (replicateddatabase.reseed)."""

    member: str
    donor: str
    phase: Literal["Copying", "Restarting"]
    """Copying: the member's server clones the donor's data next to its own (MySQL). Restarting:
    its pod restarts and starts from the donor's data (MariaDB streams it there)."""
    started: str
    """When it began (RFC 3339)."""


class HistoryEntry(StatusModel):
    """A completed failover or switchover."""

    time: str
    """When it completed (RFC 3339)."""
    kind: Literal["failover", "switchover"]
    from_member: str | None = Field(default=None, alias="from")
    to_member: str = Field(alias="to")
    reason: str
    duration_seconds: float | None = None
    """From the first failed probe (failover) or the request (switchover) to the new primary taking writes."""
    possible_loss: str | None = None
    """Why writes the old primary acknowledged may be missing on the new one (durability
    Available, or a failover a person forced); none when the promotion was lossless."""
    forced: bool = False
    """A person forced this failover (annotation hakeeper.io/force-failover-to)."""


class SwitchoverStatus(StatusModel):
    """A switchover under way."""

    target: str
    """The member being promoted."""
    source: str
    """The primary it takes over from."""
    started: str
    """When it began (RFC 3339)."""


class RolloutStatus(StatusModel):
    """A new pod template (image, resources, config) being rolled out to the members: replicas
    first, then a switchover, then the old primary (replicateddatabase.rollout)."""

    revision: str
    """The StatefulSet's updateRevision: the template being rolled out."""
    pending: list[str] = Field(default_factory=list)
    """Members still running an older template, in ordinal order."""
    next: str | None = None
    """What the rollout does or waits for now."""


class MemberLag(StatusModel):
    member: str
    seconds: float


class ErrantMember(StatusModel):
    member: str
    gtids: str
    """The transactions it has and the primary lacks (a GTID set)."""


class LoopMemoryStatus(StatusModel):
    """What the clustering loop carries from one step to the next, so that a restarted operator
    resumes where the last one stopped. Losing it is safe: probe counting restarts (a failover
    comes failureThreshold probes later), the lease is assumed fresh (a failover waits one lease
    longer), errant members are found again."""

    probe_failures: int = 0
    """Consecutive failed probes of the recorded primary."""
    failing_since: str | None = None
    """When the first of those failed probes happened (RFC 3339); a failover's duration starts here."""
    last_failover: str | None = None
    """When the last automatic failover completed (RFC 3339); failover.antiFlapWindow counts from it."""
    last_lag: list[MemberLag] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["member"]})
    """Each replica's lag as last seen while the primary was alive (afterwards the server reports none)."""
    errant: list[ErrantMember] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["member"]})
    """Members found with transactions the primary lacks; they stay out until re-seeded."""
    switchover: SwitchoverStatus | None = None
    lease_expires: str | None = None
    """When the primary's lease, as last renewed, runs out (RFC 3339): a failover waits for it."""
    last_state: Phase | None = None
    """The phase of the last step: a change is announced by an Event."""
    last_notes: list[str] = Field(default_factory=list)
    """Reasons of the decisions announced last step: a held-back failover is announced once, not every probe."""
    primary_semi_sync: bool | None = None
    """Whether the primary, when last seen taking writes, waited for replica acknowledgements
    (false: fallen back to asynchronous: durability Lossless then refuses a failover)."""


class BackupRecord(StatusModel):
    """One complete backup, as its run reported it (its manifest in the store)."""

    name: str
    """The backup's id: the UTC time its run started (e.g. 20261130T030000Z)."""
    finished: str
    """When its copy was complete (RFC 3339); a point in time from here on can be restored."""
    source: str
    """The member copied."""
    gtid: str = ""
    """The copy's GTID position."""
    size_bytes: int = 0
    """Its compressed size in the store."""
    duration_seconds: float | None = None


class BackupStatus(StatusModel):
    """Scheduled backups (spec.backup)."""

    recent: list[BackupRecord] = Field(default_factory=list, max_length=20)
    """The last complete backups, newest first (at most 20; retention may have deleted the
    oldest of them from the store since)."""
    last_success_time: str | None = None
    last_failure_time: str | None = None
    last_failure: str | None = None
    """Why the last failed run failed (its log's last lines)."""


class RestoreStatus(StatusModel):
    """The restore this database was created from (spec.restore)."""

    phase: Literal["Restoring", "Completed", "Failed"]
    backup: str | None = None
    """The backup it starts from."""
    point_in_time: str | None = None
    gtid: str | None = None
    """spec.restore.gtid, as given."""
    message: str | None = None
    """Why it failed, or what it restored (the GTID position reached)."""


class ReplicatedDatabaseStatus(BaseStatus):
    """Conditions: Ready (a writable primary exists, and the operator can reach the members),
    Available, Healthy, FailoverInProgress."""

    phase: Phase | None = None
    """Initializing (no primary yet), Healthy, Degraded (something but the primary is wrong),
    Failed (the primary is lost: a failover is due), Lost (no member can take over without
    losing acknowledged writes), Switching (a switchover is under way)."""
    current_primary: str | None = None
    """The member the -primary Service sends writes to."""
    ready_members: int = 0
    """Members up and replicating (the primary included)."""
    members: list[MemberStatus] = Field(default_factory=list)
    """Every member as last probed, in ordinal order."""
    history: list[HistoryEntry] = Field(default_factory=list, max_length=20)
    """The last failovers and switchovers, newest first."""
    last_failover_time: str | None = None
    """When the last failover completed (RFC 3339)."""
    handled_switchover: str | None = None
    """The switchover request (annotation value, or spec generation and target) already
    carried out: it is not repeated after a later failover."""
    loop: LoopMemoryStatus | None = None
    """The clustering loop's memory between its steps (probe failures, last failover, errant
    members, the primary's lease), so that a restarted operator resumes where the last one
    stopped. Losing it is safe: a failover then comes failureThreshold probes later and waits
    one lease longer."""
    rollout: RolloutStatus | None = None
    """A rollout under way; absent when every member runs the StatefulSet's template."""
    reseed: ReseedStatus | None = None
    """A re-seed under way; absent otherwise."""
    backup: BackupStatus | None = None
    restore: RestoreStatus | None = None
    loop_memory: str | None = None
    """Deprecated: the loop's memory as JSON, written by hakeeper 0.1.0. Read once by an upgraded
    operator to resume, then removed; superseded by loop."""
