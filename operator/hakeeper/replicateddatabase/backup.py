"""Cold backups of a ReplicatedDatabase and point-in-time restore (pure: names, manifests,
choices, and the sh the job and the restoring init container run).

A backup is a consistent physical copy of a replica, never of the primary, compressed (zstd),
checksummed (SHA-256) and uploaded with rclone (an S3-compatible object store, or a local path:
a PersistentVolumeClaim mounted in the job):

- MariaDB: the replica's `backup` container streams mariabackup's xbstream (the stream a
  re-seed copies: objects.backup_script), which the job compresses and uploads as it arrives:
  no scratch space, and nothing of rclone or the store's credentials in the database's pods;
- MySQL: the job's own mysqld, started on an empty scratch directory, clones the replica
  (CLONE INSTANCE ... DATA DIRECTORY: MySQL 9.7 Reference Manual 7.6.6.4 "Cloning to a Named
  Directory"), which is then archived (tar), compressed and uploaded. A clone, not
  `mysqldump --single-transaction`: it is the physical copy a restore starts a server on in the
  time it takes to copy the files (a dump must be replayed row by row and its indexes rebuilt),
  it is consistent (its own gtid_executed is exact: a restore replays from it), and it is what
  the re-seed runs already. It needs scratch space the size of the data in the job.

Binary logs are copied from the primary at each run (`mysqlbinlog`/`mariadb-binlog
--read-from-remote-server --raw`, every file from the last one stored on), so a restore can
reach any point in time up to the last run: between two backups, the archive script can run on
a shorter schedule of its own.

The store's layout under `<root>` (Target.root: bucket, prefix, database name):

    base/<id>/data.xbstream.zst | data.tar.zst   the copy
    base/<id>/manifest.json                      written last: a base without it is incomplete
    binlog/<member>/<binlog file>                raw binary logs as the primary wrote them

A restore downloads a base, checks its SHA-256 against its manifest before anything is used,
prepares it (mariabackup --prepare) or takes the clone as it is, and, for a point in time,
replays the archived binary logs on a server started on the copy, from the copy's GTID position
(MySQL: --exclude-gtids; MariaDB: --start-position=<GTID list>) up to --stop-datetime; then the
copy becomes the datadir and the member starts as a normal server (objects.init_script).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from hakeeper.replicateddatabase import restore_gtid
from hakeeper.replicateddatabase.objects import (
    BACKUP_PORT,
    BASE_CONF_DIR,
    DATA_DIR,
    OPERATOR_USER,
    REPLICATION_USER,
    SQL_STRING_FUNCTION,
    STREAM_COMPLETE,
    TMP_DIR,
    VOLUME_DIR,
    layout,
)

Flavor = Literal["mariadb", "mysql"]
REMOTE = "store"
"""The rclone remote every script names; Target.env configures it (RCLONE_CONFIG_STORE_*)."""
DATA_OBJECT = {"mariadb": "data.xbstream.zst", "mysql": "data.tar.zst"}
MANIFEST = "manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
"""A backup's id: the UTC time its run started (ID_FORMAT), so that ids sort by age."""
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
"""A host name (DNS, RFC 1123) or an IPv4 address: what reaches a shell and clone_valid_donor_list."""
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""An S3 bucket name (AWS S3 User Guide, "Bucket naming rules")."""
_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
"""A prefix or a database name inside the store: no `..`, no space, no shell or glob character."""
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MARIADB_GTID = re.compile(r"^([0-9]+-[0-9]+-[0-9]+(,[0-9]+-[0-9]+-[0-9]+)*)?$")
_MYSQL_GTID = re.compile(r"^([0-9a-f-]{36}(:[0-9]+(-[0-9]+)?)+(,\s*[0-9a-f-]{36}(:[0-9]+(-[0-9]+)?)+)*)?$")


class BackupError(ValueError):
    """Bad input to a backup or a restore (a name, a target, a manifest, a point in time); the
    message says which and why, for a condition or an Event."""


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    # fullmatch: with match, "$" also matches before a final newline ("backups\n" passed)
    if not pattern.fullmatch(value) or ".." in value.split("/"):
        raise BackupError(f"{what} {value!r} is not valid here ({pattern.pattern})")
    return value


def gtid_pattern(flavor: str) -> re.Pattern[str]:
    """A GTID position as each flavor writes it: MariaDB's domain-server-seq list, MySQL's
    uuid:interval set (MySQL 9.7 Reference Manual 19.1.3.1 "GTID Format and Storage")."""
    return _MARIADB_GTID if flavor == "mariadb" else _MYSQL_GTID


@dataclass(frozen=True)
class Target:
    """Where backups go: an S3-compatible bucket (endpoint, bucket, prefix, region; the access
    key and secret come from a Secret into the job's environment, never into a script), or a
    local path (a PersistentVolumeClaim mounted at `path`). ca_file: a CA bundle the endpoint's
    certificate is checked against (TLS), else the system's."""

    kind: Literal["s3", "volume"]
    prefix: str = ""
    bucket: str = ""
    endpoint: str = ""
    region: str = "us-east-1"
    path: str = ""
    ca_file: str = ""

    def __post_init__(self) -> None:
        if self.prefix:
            _check(_PATH, self.prefix, "prefix")
        if self.kind == "s3":
            _check(_BUCKET, self.bucket, "bucket")
            _check(_ENDPOINT, self.endpoint, "endpoint")
            _check(re.compile(r"^[a-z0-9-]{1,32}$"), self.region, "region")
        elif self.kind == "volume":
            _check(re.compile(r"^/[A-Za-z0-9._/-]*$"), self.path, "path")
        else:
            raise BackupError(f"target kind {self.kind!r} is neither s3 nor volume")
        if self.ca_file:
            _check(re.compile(r"^/[A-Za-z0-9._/-]+$"), self.ca_file, "CA file")

    def root(self, db: str) -> str:
        """The rclone path of `db`'s backups: store:<bucket>/<prefix>/<db> (s3) or
        store:<path>/<prefix>/<db> (volume)."""
        _check(_PATH, db, "database name")
        base = self.bucket if self.kind == "s3" else self.path.rstrip("/")
        return f"{REMOTE}:" + "/".join(p for p in (base, self.prefix, db) if p)

    def env(self) -> dict[str, str]:
        """rclone's configuration of the remote, as environment variables (rclone's
        "Environment variables" documentation: RCLONE_CONFIG_<REMOTE>_<OPTION>). The job adds
        RCLONE_CONFIG_STORE_ACCESS_KEY_ID and _SECRET_ACCESS_KEY from the Secret."""
        env = {"RCLONE_CONFIG": "/dev/null",  # no file: everything is in the environment
               # a store that does not answer fails the run in seconds, not minutes of retries: a
               # stream cannot be retried anyway, the next scheduled run is the retry
               "RCLONE_RETRIES": "1", "RCLONE_LOW_LEVEL_RETRIES": "3", "RCLONE_CONTIMEOUT": "15s"}
        if self.kind == "volume":
            env["RCLONE_CONFIG_STORE_TYPE"] = "local"
        else:
            env.update({"RCLONE_CONFIG_STORE_TYPE": "s3", "RCLONE_CONFIG_STORE_PROVIDER": "Other",
                        "RCLONE_CONFIG_STORE_ENDPOINT": self.endpoint, "RCLONE_CONFIG_STORE_REGION": self.region,
                        "RCLONE_CONFIG_STORE_FORCE_PATH_STYLE": "true",
                        # 16 MiB parts: a streamed upload of unknown size may have 10000 (156 GiB)
                        "RCLONE_CONFIG_STORE_CHUNK_SIZE": "16M"})
        if self.ca_file:
            env["RCLONE_CA_CERT"] = self.ca_file
        return env


@dataclass(frozen=True)
class Manifest:
    """What a backup is (manifest.json): id (ID), flavor, started and finished (RFC 3339, UTC),
    the member copied (`source`), its GTID position at the copy's point (`gtid`, the flavor's
    format; "" when it had none), the data object's name, size in bytes and SHA-256 (hex)."""

    id: str
    flavor: Flavor
    started: str
    finished: str
    source: str
    gtid: str
    object: str
    size: int
    sha256: str

    @classmethod
    def parse(cls, text: str) -> Manifest:
        """The manifest from its JSON; BackupError naming the field that is missing or wrong."""
        try:
            raw = json.loads(text)
            manifest = cls(id=raw["id"], flavor=raw["flavor"], started=raw["started"], finished=raw["finished"],
                           source=raw["source"], gtid=raw["gtid"], object=raw["object"], size=int(raw["size"]),
                           sha256=raw["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"not a backup manifest: {exc}") from None
        _check(ID, manifest.id, "backup id")
        if manifest.flavor not in DATA_OBJECT or manifest.object != DATA_OBJECT[manifest.flavor]:
            raise BackupError(f"backup {manifest.id}: flavor {manifest.flavor!r} / object {manifest.object!r}")
        _check(_SHA256, manifest.sha256, "sha256")
        _check(gtid_pattern(manifest.flavor), manifest.gtid, "GTID position")
        for moment in (manifest.started, manifest.finished):
            parse_time(moment)
        return manifest

    @property
    def finished_at(self) -> datetime:
        return parse_time(self.finished)


def parse_time(value: str) -> datetime:
    """An RFC 3339 time (UTC `Z` or an offset) as an aware datetime; BackupError otherwise."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BackupError(f"{value!r} is not an RFC 3339 time (e.g. 2026-11-30T10:00:00Z)") from None
    if moment.tzinfo is None:
        raise BackupError(f"{value!r} has no time zone (add Z for UTC)")
    return moment.astimezone(UTC)


def backup_id(now: datetime) -> str:
    return now.astimezone(UTC).strftime(ID_FORMAT)


def choose_base(manifests: Iterable[Manifest], point: datetime | None, gtid: str = "") -> Manifest:
    """The backup a restore starts from: the newest whose copy was finished by `point` (an aware
    datetime; None: the newest of all) and, when `gtid` is given (restore_gtid.canonical), whose
    GTID position it includes (restore_gtid.includes; a backup without a position, of a server
    that had written nothing or of a MySQL backup before positions were recorded, is not
    taken). Its binary logs then bring it to `point` or to `gtid`.

    Raises BackupError when there is no backup, or when `point` or `gtid` is before the oldest
    backup (no copy holds the data as it was then: refused, nothing is restored)."""
    ordered = sorted(manifests, key=lambda m: m.id)
    if not ordered:
        raise BackupError("there is no complete backup to restore from")
    usable = [m for m in ordered if (point is None or m.finished_at <= point)
              and (not gtid or (m.gtid and restore_gtid.includes(m.flavor, gtid, m.gtid)))]
    if not usable:
        oldest = min(ordered, key=lambda m: m.finished)
        if gtid:
            raise BackupError(f"the GTID {gtid} is before the oldest backup ({oldest.id}, at GTID position "
                              f"{oldest.gtid}): no backup holds the data as it was then")
        assert point is not None
        raise BackupError(f"the point in time {point.strftime('%Y-%m-%dT%H:%M:%SZ')} is before the oldest backup "
                          f"({oldest.id}, finished {oldest.finished}): no backup holds the data as it was then")
    return usable[-1]


def stop_datetime(point: datetime) -> str:
    """`point` as mysqlbinlog's --stop-datetime reads it (the job runs with TZ=UTC): whole
    seconds, since a binary log event's timestamp has no fraction; replay stops at the first
    event at or after it (MySQL 9.7 Reference Manual 6.6.9 "mysqlbinlog")."""
    return point.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------------ the job's sh

# Both flavors: pipeline stages record their exit status (dash has no pipefail); the manifest is
# written last, with values checked against the patterns above.
_COMMON = rf"""set -eu
export TZ=UTC
id=$(date -u +{ID_FORMAT})
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
work=$(mktemp -d {TMP_DIR}/backup.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$HK_STORE_ROOT/base/$id"
fail() {{ echo "backup $id failed: $*" >&2; rclone purge "$dest" >/dev/null 2>&1 || true; exit 1; }}
ok() {{ [ "$(cat "$work/rc.$1" 2>/dev/null)" = 0 ]; }}
if [ -n "$(rclone lsf "$dest/" 2>/dev/null)" ]; then
  echo "backup $id exists already (two runs in one second): this run stops, nothing changed" >&2
  exit 1
fi
source_ip=$(getent ahosts "$HK_SOURCE" | awk '{{print $1; exit}}')
[ -n "$source_ip" ] || fail "cannot resolve the replica $HK_SOURCE"
# the upload: compressed, counted and hashed on its way to the store
upload() {{
  mkfifo "$work/sum" "$work/size"
  sha256sum < "$work/sum" | cut -d' ' -f1 > "$work/sha256" &
  wc -c < "$work/size" | tr -d ' ' > "$work/bytes" &
  {{ zstd -q -T0 -3; echo $? > "$work/rc.zstd"; }} | tee "$work/sum" "$work/size" \
    | {{ rclone rcat "$dest/$1"; echo $? > "$work/rc.upload"; }}
  wait
  ok zstd || fail "zstd failed"
  ok upload || fail "the upload to $dest failed (rclone's message above)"
}}
manifest() {{ # $1 flavor, $2 object, $3 member, $4 gtid
  printf '%s\n' "$3" | grep -Eq '^[A-Za-z0-9.-]{{1,253}}$' || fail "member name '$3'"
  format='{{\n  "id": "%s",\n  "flavor": "%s",\n  "started": "%s",\n  "finished": "%s",\n  "source": "%s",\n'
  format="$format"'  "gtid": "%s",\n  "object": "%s",\n  "size": %s,\n  "sha256": "%s"\n}}\n'
  # shellcheck disable=SC2059
  printf "$format" "$id" "$1" "$started" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$3" "$4" "$2" "$(cat "$work/bytes")" \
    "$(cat "$work/sha256")" \
    > "$work/{MANIFEST}"
  rclone copyto "$work/{MANIFEST}" "$dest/{MANIFEST}" || fail "the manifest's upload failed"
  echo "backup $id of $3 complete: $(cat "$work/bytes") bytes, sha256 $(cat "$work/sha256"), GTID position '$4'"
}}
"""

# MariaDB: the replica's backup container streams the copy (objects.backup_script); its last
# file, STREAM_COMPLETE, is written only once mariabackup succeeded and names the member and the
# GTID position (the last 4 KiB of the stream are kept to read it).
_MARIADB_BACKUP = rf"""mkfifo "$work/tail"
tail -c 4096 < "$work/tail" > "$work/tail.bin" &
{{ printf '%s\n' "$REPLICATION_PASSWORD" | socat -,ignoreeof "TCP:$source_ip:{BACKUP_PORT},connect-timeout=10"
  echo $? > "$work/rc.fetch"; }} \
  | tee "$work/tail" | upload {DATA_OBJECT["mariadb"]}
wait
ok fetch || fail "the stream from $HK_SOURCE:{BACKUP_PORT} broke"
marker=$(grep -a -o '{STREAM_COMPLETE} member=[A-Za-z0-9.-]* gtid=[0-9,-]* end' "$work/tail.bin" | tail -n 1)
[ -n "$marker" ] || fail "the stream from $HK_SOURCE is incomplete (see its backup container's log)"
member=$(echo "$marker" | sed 's/.* member=\([^ ]*\) .*/\1/')
gtid=$(echo "$marker" | sed 's/.* gtid=\([^ ]*\) end$/\1/')
manifest mariadb {DATA_OBJECT["mariadb"]} "$member" "$gtid"
"""

# MySQL: a throw-away mysqld of the job's own (no network, its socket in the scratch directory)
# clones the replica as the operator's account, into $work/clone; the donor's @@hostname gives its
# member name (the member is asked by address, so that a Service in front of several replicas
# cannot answer for another).
_MYSQL_BACKUP = rf"""{SQL_STRING_FUNCTION}
mkdir "$work/server"
# the database's own my.cnf (the donor's plugins, page size and character set: the clone checks
# they match), but no network, no binary log, no init file, a small buffer pool, and
# performance_schema (clone_status, the clone's progress) whatever the database's setting
own="--defaults-file={BASE_CONF_DIR}/my.cnf"
mysqld "$own" --initialize-insecure --datadir="$work/server/data" --init-file=/dev/null \
  --log-error="$work/initialise.log" \
  || {{ cat "$work/initialise.log" >&2; fail "mysqld --initialize failed"; }}
mysqld "$own" --datadir="$work/server/data" --socket="$work/server/sock" --pid-file="$work/server/pid" \
  --skip-networking --skip-log-bin --init-file=/dev/null --innodb-buffer-pool-size=32M --super-read-only=OFF \
  --read-only=OFF --skip-replica-start --secure-file-priv="$work" --performance-schema=ON \
  --log-error="$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
local_sql() {{ mysql -S "$work/server/sock" -u root -Nse "$1"; }}
i=0
until local_sql 'SELECT 1' >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -lt 300 ] && kill -0 $server 2>/dev/null \
    || {{ cat "$work/server.log" >&2; fail "the job's mysqld did not start"; }}
  sleep 0.2
done
member=$(MYSQL_PWD="$OPERATOR_PASSWORD" mysql -h "$source_ip" -P 3306 -u {OPERATOR_USER} -Nse 'SELECT @@hostname') \
  || fail "cannot reach the replica $HK_SOURCE"
password=$(sql_string "$OPERATOR_PASSWORD")
# the password is escaped with backslashes: sql_mode (the database's, from my.cnf) must not disable them
local_sql "SET SESSION sql_mode = ''; SET GLOBAL clone_valid_donor_list = '$source_ip:3306';
  CLONE INSTANCE FROM '{OPERATOR_USER}'@'$source_ip':3306 IDENTIFIED BY '$password' DATA DIRECTORY = '$work/clone'" \
  || fail "the clone of $member failed"
# the copy's GTID position, as the replica's once the clone returned: the copy's, or later by what
# the replica applied meanwhile (clone_status.GTID_EXECUTED, the exact one, stays empty for a
# clone into a directory: seen with MySQL 9.7). A later position is the safe side: a restore up
# to a GTID takes this backup only when the GTID includes it; the restore replays from the
# copy's own gtid_executed, exact.
gtid=$(MYSQL_PWD="$OPERATOR_PASSWORD" mysql -h "$source_ip" -P 3306 -u {OPERATOR_USER} \
  -Nse "SELECT REPLACE(@@GLOBAL.gtid_executed, CHAR(10), '')") || fail "cannot read the GTID position of $member"
# the clone's own redo and undo are in place; its binary and relay logs are not (clone copies neither)
{{ tar -C "$work/clone" -cf - .; echo $? > "$work/rc.fetch"; }} | upload {DATA_OBJECT["mysql"]}
ok fetch || fail "tar of the clone failed"
manifest mysql {DATA_OBJECT["mysql"]} "$member" "$gtid"
"""

# Binary logs: every file the primary lists from the newest one already stored on (it may have
# grown since), raw, into binlog/<member>/. The replication account is enough (REPLICATION SLAVE).
_BINLOGS = r"""primary_ip=$(getent ahosts "$HK_PRIMARY" | awk '{print $1; exit}')
[ -n "$primary_ip" ] || { echo "cannot resolve the primary $HK_PRIMARY" >&2; exit 1; }
export MYSQL_PWD="$REPLICATION_PASSWORD"
primary=$(__CLIENT__ -h "$primary_ip" -u __REPL__ -Nse 'SELECT @@hostname')
printf '%s\n' "$primary" | grep -Eq '^[A-Za-z0-9.-]{1,253}$' || { echo "primary's name '$primary'" >&2; exit 1; }
logs=$(__CLIENT__ -h "$primary_ip" -u __REPL__ -Nse 'SHOW BINARY LOGS' | cut -f1)
stored=$(rclone lsf "$HK_STORE_ROOT/binlog/$primary/" 2>/dev/null | sort | tail -n 1)
first=$(echo "$logs" | head -n 1)
[ -n "$stored" ] && echo "$logs" | grep -qx "$stored" && first=$stored
mkdir -p "$work/binlog"
__BINLOG__ --read-from-remote-server --raw --host="$primary_ip" --user=__REPL__ --to-last-log \
  --result-file="$work/binlog/" "$first"
unset MYSQL_PWD
rclone copy "$work/binlog/" "$HK_STORE_ROOT/binlog/$primary/"
echo "binary logs of $primary from $first on stored: $(ls "$work/binlog" | tr '\n' ' ')"
"""


BINLOG_MARGIN_SECONDS = 3600
"""How long before the oldest kept backup started a stored binary log file must have been
written last for retention to remove it: a restore replays from the copy's own GTID position,
which trails the start when the replica copied lagged, and this is the lag allowed for."""

# Retention, once a run's manifest is stored: the newest $HK_KEEP complete backups (those with a
# manifest) stay, and every base older than the oldest of them goes, complete or not; a base newer
# than it without a manifest is another run's, under way, and stays. Ids sort by age (ID). Nothing
# goes while fewer than $HK_KEEP are complete; HK_KEEP=0 keeps everything.
# Then the binary logs no kept backup needs: a file stored (its time in the store: when the run
# that last copied it wrote it) BINLOG_MARGIN_SECONDS before the oldest kept backup started holds
# only transactions that backup has. Each member's newest file stays whatever its age: the next
# run copies from it on.
RETENTION = rf"""if [ "${{HK_KEEP:-0}}" -gt 0 ]; then
  oldest_kept=$(rclone lsf -R --files-only --include "*/{MANIFEST}" "$HK_STORE_ROOT/base/" \
    | sed -n 's|^\([0-9]\{{8\}}T[0-9]\{{6\}}Z\)/{MANIFEST}$|\1|p' | sort -r | sed -n "${{HK_KEEP}}p")
  if [ -n "$oldest_kept" ]; then
    for old in $(rclone lsf --dirs-only "$HK_STORE_ROOT/base/" | tr -d / | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$' \
        | awk -v k="$oldest_kept" '$0 < k'); do
      rclone purge "$HK_STORE_ROOT/base/$old" && echo "retention: backup $old removed (keeping $HK_KEEP)"
    done
    kept_start=$(echo "$oldest_kept" | sed 's/^\(....\)\(..\)\(..\)T\(..\)\(..\)\(..\)Z$/\1-\2-\3 \4:\5:\6/')
    cutoff=$(date -u -d "@$(( $(date -u -d "$kept_start" +%s) - {BINLOG_MARGIN_SECONDS} ))" '+%Y-%m-%d %H:%M:%S')
    for old in $(rclone lsf -R --files-only --format tp "$HK_STORE_ROOT/binlog/" 2>/dev/null | awk -F';' \
        -v cutoff="$cutoff" '
          {{ t[NR] = $1; f[NR] = $2; m = $2; sub(/\/.*/, "", m); if (!(m in last) || $2 > last[m]) last[m] = $2 }}
          END {{ for (i = 1; i <= NR; i++) {{
                  m = f[i]; sub(/\/.*/, "", m); if (t[i] < cutoff && f[i] != last[m]) print f[i] }} }}' \
        | grep -E '^[A-Za-z0-9.-]+/[A-Za-z0-9._-]+$'); do
      rclone deletefile "$HK_STORE_ROOT/binlog/$old" \
        && echo "retention: binary log $old removed (written before $cutoff, an hour before backup $oldest_kept)"
    done
  fi
fi
"""


def _binlog_tools(flavor: str) -> tuple[str, str]:
    return ("mariadb", "mariadb-binlog") if flavor == "mariadb" else ("mysql", "mysqlbinlog")


def binlog_script(flavor: str) -> str:
    """The part of a run that copies the primary's binary logs to the store (sh; needs $work)."""
    client, binlog = _binlog_tools(flavor)
    return (_BINLOGS.replace("__CLIENT__", client).replace("__BINLOG__", binlog)
            .replace("__REPL__", REPLICATION_USER))


def backup_script(flavor: str, binlogs: bool = True) -> str:
    """The sh a backup run executes in the flavor's image, as its mysql user: a copy of the
    replica $HK_SOURCE (a host name or address) uploaded to $HK_STORE_ROOT/base/<id>/ with its
    manifest, then (binlogs) the primary $HK_PRIMARY's binary logs to $HK_STORE_ROOT/binlog/.

    Environment (job_env): HK_STORE_ROOT (Target.root), HK_SOURCE, HK_PRIMARY, HK_KEEP,
    REPLICATION_PASSWORD, OPERATOR_PASSWORD (MySQL), Target.env and the store's keys. Exits
    non-zero with the reason on stderr, and removes what it uploaded of a copy that failed; a
    failed run leaves every earlier backup as it was."""
    body = _MARIADB_BACKUP if flavor == "mariadb" else _MYSQL_BACKUP
    return _COMMON + body + RETENTION + (binlog_script(flavor) if binlogs else "")


def job_env(target: Target, db: str, source: str, primary: str, keep: int = 0) -> dict[str, str]:
    """The backup job's environment but the Secrets' (passwords, the store's keys): its store,
    the replica it copies (source) and the primary whose binary logs it stores (host names or
    addresses, checked: they reach the script and SQL), and how many complete backups retention
    keeps (0: all; RETENTION)."""
    _check(_HOST, source, "replica host")
    _check(_HOST, primary, "primary host")
    if not 0 <= keep <= 10000:
        raise BackupError(f"retention {keep} is not between 0 and 10000 backups")
    return {**target.env(), "HK_STORE_ROOT": target.root(db), "HK_SOURCE": source, "HK_PRIMARY": primary,
            "HK_KEEP": str(int(keep))}


# ------------------------------------------------------------------------ the restore

@dataclass(frozen=True)
class Restore:
    """What a restore starts from: the backup `id` (choose_base) in the store $HK_STORE_ROOT,
    and `point`: None for the backup as it is, else the time (UTC) its binary logs are replayed
    up to (excluded: events at or after it are not applied), from the binlog/<binlogs_of>/
    directory of the member whose logs cover it (the primary's at the time). Or `gtid` (a
    restore_gtid.canonical text) instead of `point`: the logs are replayed up to and including it.

    id "": the script chooses the base in the store as choose_base does (CHOOSE_BASE);
    binlogs_of "": the member whose binary logs were stored last (CHOOSE_BINLOGS)."""

    id: str
    point: datetime | None = None
    binlogs_of: str = ""
    gtid: str = ""

    def __post_init__(self) -> None:
        # "": the restoring script chooses (CHOOSE_BASE, as choose_base does): the operator
        # cannot read the store, the member restoring can
        if self.id:
            _check(ID, self.id, "backup id")
        if self.point is not None and self.point.tzinfo is None:
            raise BackupError("the point in time has no time zone")
        if self.point is not None and self.gtid:
            raise BackupError("a restore stops at a point in time or at a GTID, not both")
        if self.gtid:
            # it is written into the script between single quotes
            _check(re.compile(r"^[0-9a-z_:,-]+$"), self.gtid, "GTID")
        if self.binlogs_of:
            _check(_HOST, self.binlogs_of, "member whose binary logs are replayed")

    @property
    def replays(self) -> bool:
        """Whether binary logs are replayed (a point in time or a GTID to reach)."""
        return self.point is not None or bool(self.gtid)


CHOOSE_BASE_FUNCTION = r"""choose_base() { # stdin: '<id> <finished> [<gtid>]'; $1: point in time, $2: GTID, $3: flavor
  awk -v point="$1" -v target="$2" -v flavor="$3" '__INCLUDES__
    NF == 2 || NF == 3 {
      n++; if (oldest == "" || $2 < oldest_f) { oldest = $1; oldest_f = $2; oldest_g = $3 }
      if ((point == "" || $2 <= point) && (target == "" || ($3 != "" && includes(target, $3, flavor))) && $1 > best)
        best = $1 }
    END {
      if (n == 0) { print "restore: there is no complete backup to restore from" > "/dev/stderr"; exit 1 }
      if (best == "" && target != "") {
        printf "restore: the GTID %s is before the oldest backup (%s, at GTID position %s): " \
               "no backup holds the data as it was then\n", target, oldest, oldest_g > "/dev/stderr"; exit 1 }
      if (best == "") { printf "restore: the point in time %s is before the oldest backup (%s, finished %s): " \
                        "no backup holds the data as it was then\n", point, oldest, oldest_f > "/dev/stderr"; exit 1 }
      print best
    }'
}
""".replace("__INCLUDES__", restore_gtid.INCLUDES_AWK)
"""sh: choose_base's rule over `<id> <finished> [<gtid>]` lines (finished: RFC 3339, UTC, whole
seconds: they compare as strings; gtid: the manifest's, absent when empty): the newest id
finished by the point in time $1 ('' for any) whose position the GTID $2 includes ('' for any;
$3 the flavor), on stdout, or the same refusals on stderr and exit status 1."""

# The base, when none is named: every complete backup's finished time from its manifest, then
# choose_base. The point is RFC 3339 in whole seconds ($HK_RESTORE_POINT, UTC): a manifest's
# times have no fraction, so `finished <= point` holds for it as for the exact point.
CHOOSE_BASE = CHOOSE_BASE_FUNCTION + rf"""bases=$(rclone lsf -R --files-only --include "*/{MANIFEST}" \
  "$HK_STORE_ROOT/base/") \
  || {{ echo "restore: cannot list the backups in $HK_STORE_ROOT (rclone's message above)" >&2; exit 1; }}
rows=$(for m in $bases; do
  id=${{m%/{MANIFEST}}}
  echo "$id" | grep -Eq '^[0-9]{{8}}T[0-9]{{6}}Z$' || continue
  manifest=$(rclone cat "$HK_STORE_ROOT/base/$m")
  finished=$(printf '%s\n' "$manifest" | sed -n 's/^  "finished": "\([0-9TZ:-]*\)",$/\1/p')
  gtid=$(printf '%s\n' "$manifest" | sed -n 's/^  "gtid": "\([0-9A-Za-z_:,-]*\)",$/\1/p')
  if [ -n "$finished" ]; then echo "$id $finished $gtid"; fi
done)
HK_RESTORE_ID=$(printf '%s\n' "$rows" | choose_base "$HK_RESTORE_POINT" "$HK_RESTORE_GTID" "$HK_FLAVOR")
"""

# Whose binary logs, when nobody said: the member whose logs were stored last, the primary of
# the last run. It logs what it replicated too (log_replica_updates), so its logs hold every
# transaction since they begin, not only those it wrote as the primary.
CHOOSE_BINLOGS = r"""HK_RESTORE_BINLOGS_OF=$(rclone lsf -R --files-only --format tp "$HK_STORE_ROOT/binlog/" \
  | sort | tail -n 1 | cut -d';' -f2 | cut -d/ -f1)
printf '%s\n' "$HK_RESTORE_BINLOGS_OF" | grep -Eq '^[A-Za-z0-9.-]{1,253}$' \
  || { echo "restore: no binary logs in $HK_STORE_ROOT/binlog/ to replay up to the point in time or GTID" >&2; exit 1; }
"""

# Download, verify, prepare: into .restoring.partial, renamed .restoring once complete, so a
# start cut short begins again; DATA_DIR only once every step succeeded. The SHA-256 is the
# manifest's; a copy that does not match is refused before anything reads it.
_FETCH = rf"""restoring={VOLUME_DIR}/.restoring
partial="$restoring.partial"
rm -rf "$partial" && mkdir "$partial"
rclone copyto "$HK_STORE_ROOT/base/$HK_RESTORE_ID/{MANIFEST}" "$partial/{MANIFEST}" \
  || {{ echo "restore: backup $HK_RESTORE_ID has no manifest in $HK_STORE_ROOT (incomplete or absent)" >&2; exit 1; }}
expected=$(sed -n 's/^  "sha256": "\([0-9a-f]\{{64\}}\)",\{{0,1\}}$/\1/p' "$partial/{MANIFEST}")
object=$(sed -n 's/^  "object": "\(data\.[a-z.]*\)",$/\1/p' "$partial/{MANIFEST}")
[ -n "$expected" ] && [ -n "$object" ] \
  || {{ echo "restore: backup $HK_RESTORE_ID's manifest is unreadable" >&2; exit 1; }}
echo "restoring backup $HK_RESTORE_ID ($object, sha256 $expected)"
rclone copyto "$HK_STORE_ROOT/base/$HK_RESTORE_ID/$object" "$partial/$object" \
  || {{ echo "restore: cannot download $object of backup $HK_RESTORE_ID" >&2; exit 1; }}
actual=$(sha256sum "$partial/$object" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
  echo "restore refused: backup $HK_RESTORE_ID's $object has SHA-256 $actual," \
    "its manifest says $expected (corrupted)" >&2
  rm -rf "$partial"
  exit 1
fi
mkdir "$partial/data"
"""

_MARIADB_UNPACK = rf"""zstd -q -d -c "$partial/$object" | mbstream -x -C "$partial/data"
[ -f "$partial/data/{STREAM_COMPLETE}" ] || {{ echo "restore: the copy is incomplete" >&2; exit 1; }}
if ! mariabackup --prepare --target-dir="$partial/data" > {TMP_DIR}/prepare.log 2>&1 \
    || ! grep -q '^backup_type = log-applied$' "$partial/data/xtrabackup_checkpoints"; then
  cat {TMP_DIR}/prepare.log >&2
  exit 1
fi
gtid=$(cut -f3 "$partial/data/xtrabackup_binlog_info" 2>/dev/null || true)
if [ -z "$gtid" ] && [ -f "$partial/data/xtrabackup_slave_info" ]; then
  gtid=$(sed -n "s/^SET GLOBAL gtid_slave_pos = '\([0-9,-]*\)';$/\1/p" "$partial/data/xtrabackup_slave_info")
fi
echo "$gtid" | grep -Eq '^([0-9]+-[0-9]+-[0-9]+(,|$))*$'
"""

_MYSQL_UNPACK = r"""zstd -q -d -c "$partial/$object" | tar -C "$partial/data" -xf -
gtid=""
"""

# A server on the copy, as the member's own (its my.cnf and init file: the accounts of this
# database's Secret), but with no network, writable, not replicating. MariaDB: its binary log
# state starts at the copy's position, so the replayed transactions and the new primary's own
# continue its GTIDs (MariaDB's "gtid_binlog_state"); MySQL's clone carries gtid_executed.
# No event scheduler: the copy holds the self-fencing event (clustering/lease.py) and a lease
# that lapsed long ago, so on this writable server the event set it read-only within a second
# (MySQL: super_read_only, which stopped the replay half-way: ERROR 1290, seen in bench/backup).
_SERVE_COPY = rf"""{{server}} --defaults-file={BASE_CONF_DIR}/my.cnf --datadir="$partial/data" --skip-networking \
  --socket={TMP_DIR}/restore.sock --pid-file={TMP_DIR}/restore.pid --read-only=OFF --event-scheduler=OFF {{extra}}\
  --log-error={TMP_DIR}/restore.log &
server=$!
# a restore that fails stops it too (in a pod the container's end would; elsewhere it stayed)
trap 'kill $server 2>/dev/null && wait $server 2>/dev/null' EXIT
sql() {{{{ MYSQL_PWD="$OPERATOR_PASSWORD" {{client}} -S {TMP_DIR}/restore.sock -u {OPERATOR_USER} "$@"; }}}}
i=0
until sql -Nse 'SELECT 1' >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 600 ] || {{{{ cat {TMP_DIR}/restore.log >&2; exit 1; }}}}
  kill -0 $server 2>/dev/null || {{{{ cat {TMP_DIR}/restore.log >&2; exit 1; }}}}
  sleep 0.2
done
"""

_MARIADB_POSITION = r"""sql -e "RESET SLAVE ALL; RESET MASTER;
  SET GLOBAL gtid_binlog_state = '$gtid'; SET GLOBAL gtid_slave_pos = '$gtid'"
"""
# a clone of a replica carries its replication settings: the restored server replicates nothing
_MYSQL_POSITION = r"""sql -e "RESET REPLICA ALL"
"""

_REPLAY = rf"""rm -rf {TMP_DIR}/binlog && mkdir {TMP_DIR}/binlog
rclone copy "$HK_STORE_ROOT/binlog/$HK_RESTORE_BINLOGS_OF/" {TMP_DIR}/binlog/
files=$(ls {TMP_DIR}/binlog | grep -E '^[A-Za-z0-9._-]+\.[0-9]+$' | sort | sed 's|^|{TMP_DIR}/binlog/|')
[ -n "$files" ] || {{ echo "restore: no binary logs of $HK_RESTORE_BINLOGS_OF in the store" >&2; exit 1; }}
__COVERED__
echo "replaying the binary logs up to __UPTO__ from GTID position '$start'"
# word splitting of $files is wanted: names checked above
# (the status recorded whatever it is: under sh -e a failure would end the group before it)
{{ rc=0; __BINLOG__ ${{start:+__FROM__}} __STOP__ $files || rc=$?; echo $rc > {TMP_DIR}/rc.binlog; }} | sql
"""
# The logs must be whole: numbered one after the other (a file missing in between would be skipped),
# and begin at or before the copy's position: the GTID state a file begins with (MySQL's
# Previous-GTIDs event, MariaDB's Gtid list event, at the start of every binary log file) has to
# be included in the copy's, else the transactions between are in no file of the store (removed by
# retention, or written by another member before a failover) and the replay would skip them
# without a word: refused instead. Only the file's first 64 KiB are read: those events come first.
_COVERED = r"""echo "$files" | sed 's/.*\.0*\([0-9][0-9]*\)$/\1/' | awk -v member="$HK_RESTORE_BINLOGS_OF" '
  NR > 1 && $1 != prev + 1 {
    printf "restore: binary log number %d of %s is not in the store (it has %d and %d): " \
           "the transactions in it would be skipped\n", prev + 1, member, prev, $1 > "/dev/stderr"; exit 1 }
  { prev = $1 }'
begins=$(__BINLOG__ --stop-position=65536 "$(echo "$files" | head -n 1)" 2>/dev/null | __BEGINS__)
__INCLUDES__ || {
  echo "restore: the binary logs of $HK_RESTORE_BINLOGS_OF in the store begin at GTID position '$begins'," \
    "after the backup's '$start': the transactions between are in none of them (removed, or written by" \
    "another member before a failover); restore a later backup, or this one as it is" >&2; exit 1; }
""".replace("__INCLUDES__", restore_gtid.includes_sh('"$start"', '"$begins"'))
_BEGINS = {
    # '#<time> server id 1  end_log_pos 197 CRC32 0x...  Previous-GTIDs', then '# <uuid:intervals>[,]'
    # lines, one per source, up to the next '# at <offset>'
    "mysql": r"""sed -n '/Previous-GTIDs$/,/^# at /s/^# \([0-9a-z_:,-]*:[0-9][0-9:,-]*\)$/\1/p' | tr -d '\n'""",
    # '#<time> server id 1  end_log_pos 256 CRC32 0x...  Gtid list [0-1-100]'
    "mariadb": r"""sed -n 's/.*Gtid list \[\([0-9,-]*\)\]$/\1/p' | head -n 1""",
}

_REPLAYED = rf"""[ "$(cat {TMP_DIR}/rc.binlog)" = 0 ] \
  || {{ echo "restore: reading the binary logs failed" >&2; exit 1; }}
"""

# Up to a GTID: the replay stops after it (MariaDB's --stop-position takes a GTID position,
# inclusive: MariaDB documentation, "mariadb-binlog Options"; MySQL's --include-gtids applies
# only what is in the set: MySQL 9.7 Reference Manual 6.6.9 "mysqlbinlog"), but a log that ends
# before it stops nothing: the position reached must include the GTID, else the restore fails
# (the logs stored do not reach it yet, or the GTID was never written). Checked before the
# reader's status, which is an error too when MariaDB's does not reach its stop position.
_REACHED = r"""reached=$(sql -Nse "__POSITION__")
__INCLUDES__ || {
  echo "restore: the binary logs in the store end at GTID position '$reached', before the GTID $HK_RESTORE_GTID" \
    "(not copied to the store yet, or never written)" >&2; exit 1; }
""".replace("__INCLUDES__", restore_gtid.includes_sh('"$reached"', '"$HK_RESTORE_GTID"'))

_FINISH = r"""echo "restored data as of GTID position '$(sql -Nse "__EXECUTED__")'"
kill $server && wait $server || true
mv "$partial/data" "$restoring"
rm -rf "$partial"
"""


def restore_script(flavor: str, restore: Restore) -> str:
    """sh for the init container of a new database's first member, run before it initialises
    an empty datadir (objects.init_script's `restore`): when the member has no datadir yet, the
    backup restore.id from $HK_STORE_ROOT is downloaded, checked, prepared, brought to
    restore.point, and becomes the datadir; a member that has one already is left alone.

    Environment: as the init container's (the passwords) plus Target.env, the store's keys and
    HK_STORE_ROOT; the values of `restore` are written into the script, checked (Restore)."""
    server = layout(flavor)
    client, binlog = _binlog_tools(flavor)
    extra = "--skip-slave-start " if flavor == "mariadb" else "--super-read-only=OFF --skip-replica-start "
    serve = _SERVE_COPY.format(server=server.server, client=client, extra=extra)
    # TZ: mysqlbinlog reads --stop-datetime in the local time zone
    lines = [f"if [ ! -d {DATA_DIR} ] && [ ! -d {VOLUME_DIR}/.restoring ]; then", "export TZ=UTC",
             f"HK_FLAVOR={flavor}", f"HK_RESTORE_GTID='{restore.gtid}'"]
    if restore.id:
        lines.append(f"HK_RESTORE_ID={restore.id}")
    else:
        point = "" if restore.point is None else restore.point.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines += [f"HK_RESTORE_POINT='{point}'", CHOOSE_BASE.rstrip("\n")]
    if restore.point is not None:
        lines.append(f"HK_RESTORE_STOP='{stop_datetime(restore.point)}'")
    if restore.replays:
        lines.append(f"HK_RESTORE_BINLOGS_OF={restore.binlogs_of}" if restore.binlogs_of
                     else CHOOSE_BINLOGS.rstrip("\n"))
    body = _FETCH + (_MARIADB_UNPACK if flavor == "mariadb" else _MYSQL_UNPACK) + serve
    body += _MARIADB_POSITION if flavor == "mariadb" else _MYSQL_POSITION
    # the server's position as restore_gtid compares it (MySQL prints a line break after each uuid's part)
    position = ("SELECT @@GLOBAL.gtid_current_pos" if flavor == "mariadb"
                else "SELECT REPLACE(@@GLOBAL.gtid_executed, CHAR(10), '')")
    if restore.replays:
        if flavor == "mariadb":
            start = 'start="$gtid"\n'
            source = "--start-position=$start"
            upto = '--stop-position="$HK_RESTORE_GTID"'
        else:
            start = f'start=$(sql -Nse "{position}")\n'
            source = "--exclude-gtids=$start"
            upto = '--include-gtids="$HK_RESTORE_GTID"'
        if restore.point is not None:
            upto, words = '--stop-datetime="$HK_RESTORE_STOP"', "$HK_RESTORE_STOP (UTC)"
        else:
            words = "and including the GTID $HK_RESTORE_GTID"
        covered = _COVERED.replace("__BINLOG__", binlog).replace("__BEGINS__", _BEGINS[flavor])
        body += start + (_REPLAY.replace("__COVERED__", covered.rstrip("\n")).replace("__BINLOG__", binlog)
                         .replace("__FROM__", source).replace("__STOP__", upto).replace("__UPTO__", words))
        if restore.gtid:
            body += _REACHED.replace("__POSITION__", position)
        body += _REPLAYED
    body += _FINISH.replace("__EXECUTED__", position)
    # a start cut short after the copy was complete: it only has to be moved into place
    lines += [body + "fi", f"if [ -d {VOLUME_DIR}/.restoring ] && [ ! -d {DATA_DIR} ]; then",
              f"  mv {VOLUME_DIR}/.restoring {DATA_DIR}", "fi", ""]
    return "\n".join(lines)


def restore_env(target: Target, db: str) -> dict[str, str]:
    """The restoring init container's environment but the Secrets': Target.env and
    HK_STORE_ROOT (the store of the database `db` backed up)."""
    return {**target.env(), "HK_STORE_ROOT": target.root(db)}


def manifests_from(texts: Mapping[str, str]) -> list[Manifest]:
    """Manifests parsed from their JSON by object name; BackupError names the one that is not."""
    out = []
    for name, text in sorted(texts.items()):
        try:
            out.append(Manifest.parse(text))
        except BackupError as exc:
            raise BackupError(f"{name}: {exc}") from None
    return out
